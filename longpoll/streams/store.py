"""Users and statuses: the book's records, and the in-process store.

Both stores keep the same records (a user: id, login, name, posts, signup;
a status: id, uid, login, message, posted, location) and publish each new
status, and each deletion in the book's format (the status with
``"deleted": true``), to the log topic ``statuses`` in the same atomic step
as the write, so a status is never stored without being published.

API tokens are random, shown once, and kept only as SHA-256 digests: a stolen
copy of the store gives no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any, Protocol

from ..backends.memory import MemoryLog
from ..errors import Conflict, Forbidden, NotFound, Unauthorized

TOPIC = "statuses"


class Store(Protocol):
    def create_user(self, login: str, name: str) -> dict[str, Any]:
        """Returns the user with its ``token``; Conflict if the login exists (case-insensitive)."""

    def post_status(self, token: str, message: str, location: str | None) -> dict[str, Any]: ...

    def delete_status(self, token: str, status_id: int) -> dict[str, Any]: ...

    def get_status(self, status_id: int) -> dict[str, Any]: ...


def new_token() -> tuple[str, str]:
    """A token for the client and the digest the store keeps."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bad_token() -> Unauthorized:
    return Unauthorized("a valid API token is required: Authorization: Bearer <token>")


class MemoryStore:
    """The embedded store: dicts under one lock, publishing to the in-process log."""

    def __init__(self, log: MemoryLog):
        self.log = log
        self._lock = threading.Lock()
        self._users: dict[int, dict[str, Any]] = {}
        self._logins: dict[str, int] = {}
        self._tokens: dict[str, int] = {}
        self._statuses: dict[int, dict[str, Any]] = {}
        self._user_ids = 0
        self._status_ids = 0

    def create_user(self, login: str, name: str) -> dict[str, Any]:
        token, hashed = new_token()
        with self._lock:
            if login.lower() in self._logins:
                raise Conflict(f"the login {login!r} is taken")
            self._user_ids += 1
            uid = self._user_ids
            self._logins[login.lower()] = uid
            self._tokens[hashed] = uid
            self._users[uid] = {"id": uid, "login": login, "name": name, "posts": 0,
                                "signup": time.time(), "token": hashed}
        return {"id": uid, "login": login, "token": token}

    def _author(self, token: str) -> dict[str, Any]:
        hashed = digest(token)
        user = self._users.get(self._tokens.get(hashed, 0))
        if user is None or not hmac.compare_digest(user["token"], hashed):
            raise bad_token()
        return user

    def post_status(self, token: str, message: str, location: str | None) -> dict[str, Any]:
        with self._lock:
            user = self._author(token)
            self._status_ids += 1
            status = {"id": self._status_ids, "uid": user["id"], "login": user["login"],
                      "message": message, "posted": round(time.time(), 3)}
            if location is not None:
                status["location"] = location
            self._statuses[status["id"]] = status
            user["posts"] += 1
            self.log.append(TOPIC, status)
        return dict(status)

    def delete_status(self, token: str, status_id: int) -> dict[str, Any]:
        with self._lock:
            user = self._author(token)
            status = self._statuses.get(status_id)
            if status is None:
                raise NotFound(f"no status {status_id}")
            if status["uid"] != user["id"]:
                raise Forbidden("only its author can delete a status")
            del self._statuses[status_id]
            user["posts"] -= 1
            self.log.append(TOPIC, {**status, "deleted": True})
        return {"id": status_id, "deleted": True}

    def get_status(self, status_id: int) -> dict[str, Any]:
        status = self._statuses.get(status_id)
        if status is None:
            raise NotFound(f"no status {status_id}")
        return dict(status)
