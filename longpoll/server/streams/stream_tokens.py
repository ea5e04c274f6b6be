"""Stream tokens: short-lived signed credentials in a URL, so that a browser can stream its home timeline.

``GET /statuses/home.json`` is the token's user's own, and ``EventSource``
cannot send the ``Authorization`` header that says who that is.  So a page
that holds the user's API token asks for a stream token with it
(``POST /home/stream-tokens``) and puts that in the stream's query string
(``stream_token=``), where ``EventSource``, and its own reconnects to the same
URL, carry it.

A stream token is ``<uid>.<expires>.<signature>``: the HMAC-SHA256, under a
server secret, of what it is for, the user id, its expiry (Unix seconds)
and the user's *stream salt*.  It needs no lookup of the token itself to
check and is good in every process that shares the secret; it names one
user and one use (only the home stream reads it, and the use is signed, so
no other token made with the secret passes for it); and it expires.  Its
cost is that it travels in URLs, which proxies and access logs keep: hence
a short life (SECURITY.md).

The salt is random, made for the user when its first stream token is
issued and kept in the user's own record, so it goes wherever the record
goes.  It is what makes a token name one user rather than one user id:
ids are used again after a data loss that the secret outlives (Redis
restored from an older snapshot, or a failover to a replica that had not
caught up: the users made since are gone, the secret made before is not,
and the next signups take their ids).  The new user of an id has another
salt, or none yet, so the old user's tokens are refused.

On Redis the secret is kept in Redis, beside the data it guards, under
``<prefix>stream-token-secret``: the first token issued makes it, every
process reads it there for each check (a GET, and an HGET of the user's
salt), so every process accepts every other's tokens, and deleting the key
revokes them all at once.  The embedded backend is one process, so the
secret is that process's own, and its tokens end with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from ...backends.redis import unavailable_as_503
from ...errors import Unauthorized

LIFETIME = 600
"""Seconds a stream token lives, at most: long enough to outlast a stream or two (a stream ends after
``max_stream_seconds`` and is opened again with the token), short enough that one copied from a log is
soon worthless."""

PURPOSE = b"longpoll home stream\0"
"""Signed into every stream token: a signature made with the secret for anything else never matches."""

TOKEN = re.compile(r"([0-9]{1,18})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")

PARAM = "stream_token"


class StreamTokenExpired(Unauthorized):
    """A stream token that was good and has expired: get a new one and resume the same session."""

    code = "stream_token_expired"


def _refused() -> Unauthorized:
    return Unauthorized(f"{PARAM}: not a valid stream token (get one from POST /home/stream-tokens)", param=PARAM)


class Salts(Protocol):
    """Where each user's stream salt is kept: with the user's record, in the store of users."""

    def stream_salt(self, uid: int, make: bool = False) -> bytes | None:
        """The user's salt, made first if ``make`` and it has none; None when there is no such user, or (without
        ``make``) the user has none."""


class StreamTokens:
    """Issues and checks stream tokens; ``redis_client`` (None on the embedded backend) keeps the secret, and
    ``salts`` (the store of users) each user's salt.  Without ``salts`` a token is bound to the user id alone."""

    def __init__(self, redis_client: Any = None, *, salts: Salts | None = None, prefix: str = "longpoll:",
                 lifetime: int = LIFETIME, clock: Callable[[], float] = time.time):
        self.redis = redis_client
        self.salts = salts
        self.secret_key = prefix + "stream-token-secret"
        self.lifetime = lifetime
        self.clock = clock
        self._secret = secrets.token_bytes(32)  # the embedded backend's

    def issue(self, uid: int, seconds: int | None = None) -> dict[str, Any]:
        """A token for ``uid`` that lives ``seconds`` (at most, and by default, ``lifetime``)."""
        seconds = self.lifetime if seconds is None else min(seconds, self.lifetime)
        expires = math.ceil(self.clock() + seconds)
        salt = self._salt(uid, make=True)
        if salt is None:  # the user went between the API token's check and now (its data was lost)
            raise Unauthorized("the user of this API token is gone")
        token = f"{uid}.{expires}.{self._sign(self._made(), uid, expires, salt)}"
        return {"token": token, "expires": expires, "expires_in": seconds}

    def verify(self, token: Any) -> int:
        """The user id a stream token was issued to; 401 if it is malformed, forged or expired."""
        found = TOKEN.fullmatch(token) if isinstance(token, str) else None
        if found is None:
            raise _refused()
        uid, expires, signature = int(found[1]), int(found[2]), found[3]
        secret = self._current()
        salt = self._salt(uid) if secret is not None else None
        if secret is None or salt is None or not hmac.compare_digest(signature, self._sign(secret, uid, expires, salt)):
            raise _refused()
        if self.clock() >= expires:
            raise StreamTokenExpired(f"{PARAM}: expired; get a new one from POST /home/stream-tokens and "
                                     "resume with the same key and cursor", param=PARAM)
        return uid

    @staticmethod
    def _sign(secret: bytes, uid: int, expires: int, salt: bytes) -> str:
        mac = hmac.new(secret, PURPOSE + f"{uid}.{expires}\0".encode() + salt, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def _salt(self, uid: int, make: bool = False) -> bytes | None:
        return b"" if self.salts is None else self.salts.stream_salt(uid, make)

    def _current(self) -> bytes | None:
        """The secret as it is now (on Redis: None while no token was ever issued)."""
        if self.redis is None:
            return self._secret
        with unavailable_as_503():
            secret: bytes | None = self.redis.get(self.secret_key)
        return secret

    def _made(self) -> bytes:
        """The secret, made if there is none yet (on Redis, the first one made stays: every process signs alike)."""
        if self.redis is None:
            return self._secret
        with unavailable_as_503():
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self.secret_key, secrets.token_bytes(32), nx=True)
            pipe.get(self.secret_key)
            secret: bytes = pipe.execute()[1]
        return secret
