"""Users and statuses: the book's records, and the in-process store.

Both stores keep the same records (a user: id, login, name, posts, signup;
a status: id, uid, login, message, posted, location) and publish each new
status, and each deletion in the book's format (the status with
``"deleted": true``), to the log topic ``statuses`` in the same atomic step
as the write, so a status is never stored without being published.

API tokens are random, shown once, and kept only as SHA-256 digests: a stolen
copy of the store gives no usable token.  A user's stream salt (random, made
with its first stream token, ``stream_tokens.py``) is kept in its record, so
that a user id handed out again after a data loss is another user to its
stream tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ... import Batch, Conflict, Forbidden, NotFound, Unauthorized
from .social import SocialLimits, SocialStore
from .social_memory import MemorySocial

TOPIC = "statuses"

STREAM_SALT_BYTES = 16
"""A stream salt needs only to differ between two users of one id, not to be secret: 128 random bits do."""

Hydrate = Callable[[dict[str, Any]], dict[str, Any]]
"""Given a status about to be published (all but its id), the fields to add to it."""


class Log(Protocol):
    """What the embedded store publishes to: the broker's log, appended to under the store's lock, so that
    statuses and graph events are in the log in the order they were made (and a home snapshot is true at
    its ``tail``)."""

    def append(self, topic: str, item: Any) -> str: ...

    def tail(self) -> str: ...


class Store(Protocol):
    def create_user(self, login: str, name: str) -> dict[str, Any]:
        """Returns the user with its ``token``; Conflict if the login exists (case-insensitive)."""

    posts: Batch | None
    """Where ``post_status`` calls made together go as one (``waits.Call(batch=)``), if anywhere."""

    def post_status(self, token: str, message: str, location: str | None,
                    hydrate: Hydrate | None = None) -> dict[str, Any]: ...

    def delete_status(self, token: str, status_id: int) -> dict[str, Any]: ...

    def get_status(self, status_id: int) -> dict[str, Any]: ...

    def stream_salt(self, uid: int, make: bool = False) -> bytes | None:
        """The user's stream-token salt, kept in its record (``stream_tokens.Salts``)."""


class StreamStore(Store, SocialStore, Protocol):
    """What the status streams run on: statuses and the social graph in one store (``open_store`` makes one)."""


def new_token() -> tuple[str, str]:
    """A token for the client and the digest the store keeps."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bad_token() -> Unauthorized:
    return Unauthorized("a valid API token is required: Authorization: Bearer <token>")


def draft(uid: int, login: str, message: str, location: str | None) -> dict[str, Any]:
    """A status before the store gives it an id: what hydrators see."""
    status = {"uid": uid, "login": login, "message": message,
              "posted": round(time.time(), 3)}  # what Lua's cjson renders exactly (14 significant digits)
    if location is not None:
        status["location"] = location
    return status


class MemoryStore(MemorySocial):
    """The embedded store: dicts under one lock, publishing to the in-process log."""

    posts: Batch | None = None  # a post is a moment under a lock: nothing to batch

    def __init__(self, log: Log, social_limits: SocialLimits = SocialLimits()):
        self.log = log
        self._lock = threading.Lock()
        self._users: dict[int, dict[str, Any]] = {}
        self._logins: dict[str, int] = {}
        self._tokens: dict[str, int] = {}
        self._statuses: dict[int, dict[str, Any]] = {}
        self._user_ids = 0
        self._status_ids = 0
        self._init_social(social_limits)

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

    def stream_salt(self, uid: int, make: bool = False) -> bytes | None:
        with self._lock:
            user = self._users.get(uid)
            if user is None:
                return None
            if make and "stream_salt" not in user:
                user["stream_salt"] = secrets.token_bytes(STREAM_SALT_BYTES)
            return user.get("stream_salt")

    def _author(self, token: str) -> dict[str, Any]:
        hashed = digest(token)
        user = self._users.get(self._tokens.get(hashed, 0))
        if user is None or not hmac.compare_digest(user["token"], hashed):
            raise bad_token()
        return user

    def post_status(self, token: str, message: str, location: str | None,
                    hydrate: Hydrate | None = None) -> dict[str, Any]:
        with self._lock:
            user = self._author(token)
        status = draft(user["id"], user["login"], message, location)
        extra = hydrate(status) if hydrate is not None else {}  # outside the lock: it may be slow
        with self._lock:
            self._status_ids += 1
            status = {"id": self._status_ids, **status, **extra}
            self._statuses[status["id"]] = status
            user["posts"] += 1
            self._timelines_post(user["id"], status["id"])
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
            self._timelines_delete(user["id"], status_id)
            self.log.append(TOPIC, {**status, "deleted": True})
        return {"id": status_id, "deleted": True}

    def get_status(self, status_id: int) -> dict[str, Any]:
        status = self._statuses.get(status_id)
        if status is None:
            raise NotFound(f"no status {status_id}")
        return dict(status)
