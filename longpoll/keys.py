"""Session keys: 144 random bits, the kind of session, and which process keeps a process-local one.

A key is ``<kind><random>`` or, for a process-local session made where a
route is set, ``L<route>-<random>``; ``<random>`` is always the last 24
characters (144 bits from ``secrets``, URL-safe base64).  Everything stays in
``[A-Za-z0-9_-]`` (``params.KEY``), so a key needs no escaping in a query
string or an SSE ``id:``.

The kind is the first character (``KINDS``): ``D``, a durable session any
process can continue from the session store, or ``L``, one only the process
that made it holds.  The route names that process, so a proxy can send each
``L`` key back to it (``map $arg_key`` in nginx, docs/deploying.md): a hash of
the key at the proxy could not, the key being random.  It comes from
``longpoll.route`` in the global config, else the ``LONGPOLL_ROUTE``
environment variable (``longpoll serve --route``); a route name is letters
and digits only, so the ``-`` after it ends it unambiguously.  Durable keys
carry no route: any process continues them.

A durable key also carries what its session is rebuilt from when the session
store lost it (Redis restarted without its data): ``D<random><sealed>``,
where ``<sealed>`` is the URL-safe base64 of a MAC, the short name of the
store's epoch the key was made in, and the JSON of the first poll's path
arguments and parameters.  The MAC (keyed with the deployment's secret,
``SessionStore.keying``) covers those, the random part, the endpoint and
the identity (``bind=``) the session was made for, so a key changed in any
part, or sent by another identity or to another endpoint, opens nothing.  A
durable session whose parameters do not fit (keys are at most
``MAX_KEY_CHARS``) gets a plain ``D<random>`` key, and is not rebuilt.  The
session's cursors are signed with a nonce made from the same secret and the
key (:func:`nonce`), so they verify without the record too.

A replayed session's key (``R``) is sealed the same way, with no epoch: any
process that has the secret calls the function again with the parameters
the key carries, and skips the items the client's cursor says it has.  Its
secret is the session store's, else the configured one
(:func:`configured_secret`); with neither, the session stays process-local
(``L``, routed as above).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from typing import Any

import cherrypy
import orjson

RANDOM_BYTES = 18
"""144 random bits per key: 24 URL-safe characters after the marks."""

RANDOM_CHARS = 24

LOCAL = "L"
DURABLE = "D"
REPLAY = "R"
KINDS = (LOCAL, DURABLE, REPLAY)
"""A key's first character: a session kept by the process that made it (L), one any process can continue
from the session store (D), or one any process rebuilds by replaying its generator, a pure function of its
parameters (R, ``json_yield(replay=True)``).  Set when the key is first handed out (``Registry.mark``)."""

MAX_KEY_CHARS = 256
"""The longest key (``params.KEY``): a durable key carries its session's parameters."""

MAC_BYTES = 12
EPOCH_BYTES = 4

ROUTE = re.compile(r"[A-Za-z0-9]{1,32}")
ROUTE_ENV = "LONGPOLL_ROUTE"

SECRET_ENV = "LONGPOLL_SECRET"
MIN_SECRET_CHARS = 16


def check_route(name: object) -> str:
    """A route name as given, or ValueError saying what one may be."""
    if not isinstance(name, str) or not ROUTE.fullmatch(name):
        raise ValueError(f"a route is 1 to 32 letters and digits (it is put in session keys), not {name!r}")
    return name


def check_secret(given: object) -> str:
    """A configured secret as given, or ValueError saying what one may be."""
    if not isinstance(given, str) or len(given) < MIN_SECRET_CHARS:
        raise ValueError(f"a secret is a string of at least {MIN_SECRET_CHARS} characters (it seals session keys)")
    return given


def configured_secret() -> bytes | None:
    """The deployment's own secret, where it has no session store to keep one: ``longpoll.secret`` in the
    global config, else ``$LONGPOLL_SECRET``; every process given the same one verifies the others' keys."""
    given = cherrypy.config.get("longpoll.secret") or os.environ.get(SECRET_ENV) or None
    if given is None:
        return None
    return hashlib.blake2b(check_secret(given).encode(), digest_size=32, person=b"longpoll-secret").digest()


def route() -> str | None:
    """This process's route name: ``longpoll.route`` in the global config, else ``$LONGPOLL_ROUTE``."""
    name = cherrypy.config.get("longpoll.route")
    if name is None:
        name = os.environ.get(ROUTE_ENV) or None
    return None if name is None else check_route(name)


def new() -> str:
    """A new session's key, process-local until marked otherwise (:func:`marked`)."""
    return make(LOCAL, secrets.token_urlsafe(RANDOM_BYTES))


def make(kind: str, random: str) -> str:
    if kind == LOCAL:
        name = route()
        if name is not None:
            return f"{LOCAL}{name}-{random}"
    return kind + random


def marked(key: str, kind: str) -> str:
    """The same key said as another kind (its random part kept; a durable key drops the route)."""
    return make(kind, key[-RANDOM_CHARS:])


def route_of(key: str) -> str | None:
    """The route a process-local key names, if any."""
    if key[:1] != LOCAL or len(key) < RANDOM_CHARS + 3 or key[-RANDOM_CHARS - 1] != "-":
        return None
    name = key[1:-RANDOM_CHARS - 1]
    return name if ROUTE.fullmatch(name) else None


def sealed(key: str, secret: bytes, epoch: bytes, endpoint: str, tag: Any, origin: dict[str, Any],
           kind: str = DURABLE) -> str | None:
    """A durable (or replayed) session's key that carries what rebuilds it (see the module's docstring); None
    when its parameters do not fit."""
    random = key[-RANDOM_CHARS:]
    body = orjson.dumps([origin.get("args", []), origin.get("params", {})])
    mac = _mac(secret, kind + random, epoch, endpoint, tag, body)
    made = kind + random + base64.urlsafe_b64encode(mac + epoch + body).decode().rstrip("=")
    return made if len(made) <= MAX_KEY_CHARS else None


def opened(key: str, secret: bytes, endpoint: str, tag: Any) -> tuple[bytes, dict[str, Any]] | None:
    """What a sealed durable or replayed key carries (the epoch it was made in, and its session's origin),
    if this deployment made it for this endpoint and this identity; None for any other key."""
    if key[:1] not in (DURABLE, REPLAY) or len(key) <= 1 + RANDOM_CHARS:
        return None
    random, rest = key[1:1 + RANDOM_CHARS], key[1 + RANDOM_CHARS:]
    try:
        raw = base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4))
    except (binascii.Error, ValueError):
        return None
    mac, epoch, body = raw[:MAC_BYTES], raw[MAC_BYTES:MAC_BYTES + EPOCH_BYTES], raw[MAC_BYTES + EPOCH_BYTES:]
    if not secrets.compare_digest(mac, _mac(secret, key[0] + random, epoch, endpoint, tag, body)):
        return None
    args, params = orjson.loads(body)
    return epoch, {"endpoint": endpoint, "args": args, "params": params}


def nonce(secret: bytes, key: str) -> bytes:
    """What a durable session's cursors are signed with: made again from its key wherever the secret is."""
    return hashlib.blake2b(key.encode(), key=secret[:64], digest_size=16, person=b"longpoll-cursor").digest()


def _mac(secret: bytes, random: str, epoch: bytes, endpoint: str, tag: Any, body: bytes) -> bytes:
    signed = orjson.dumps([random, epoch.hex(), endpoint, tag]) + body
    return hashlib.blake2b(signed, key=secret[:64], digest_size=MAC_BYTES, person=b"longpoll-key").digest()
