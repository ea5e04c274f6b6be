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

The secret is the backend's (``Backend.secret("stream-token")``).  On
Redis it is kept in Redis, beside the data it guards, under
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

from ... import Unauthorized

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


Secret = Callable[[bool], bytes | None]
"""The secret tokens are signed with, made first if asked to and there is none (else None):
``functools.partial(broker.backend.secret, "stream-token")``."""


class StreamTokens:
    """Issues and checks stream tokens; ``secret`` (by default one of this object's own) is what they are signed
    with, and ``salts`` (the store of users) keeps each user's salt.  Without ``salts`` a token is bound to the
    user id alone."""

    def __init__(self, secret: Secret | None = None, *, salts: Salts | None = None, lifetime: int = LIFETIME,
                 clock: Callable[[], float] = time.time):
        own = secrets.token_bytes(32)
        self.secret: Secret = secret if secret is not None else lambda make: own
        self.salts = salts
        self.lifetime = lifetime
        self.clock = clock

    def issue(self, uid: int, seconds: int | None = None) -> dict[str, Any]:
        """A token for ``uid`` that lives ``seconds`` (at most, and by default, ``lifetime``)."""
        seconds = self.lifetime if seconds is None else min(seconds, self.lifetime)
        expires = math.ceil(self.clock() + seconds)
        salt = self._salt(uid, make=True)
        if salt is None:  # the user went between the API token's check and now (its data was lost)
            raise Unauthorized("the user of this API token is gone")
        secret = self.secret(True)
        assert secret is not None  # made when asked to
        token = f"{uid}.{expires}.{self._sign(secret, uid, expires, salt)}"
        return {"token": token, "expires": expires, "expires_in": seconds}

    def verify(self, token: Any) -> int:
        """The user id a stream token was issued to; 401 if it is malformed, forged or expired."""
        found = TOKEN.fullmatch(token) if isinstance(token, str) else None
        if found is None:
            raise _refused()
        uid, expires, signature = int(found[1]), int(found[2]), found[3]
        secret = self.secret(False)  # None while no token was ever issued
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
