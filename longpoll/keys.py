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
"""

from __future__ import annotations

import os
import re
import secrets

import cherrypy

RANDOM_BYTES = 18
"""144 random bits per key: 24 URL-safe characters after the marks."""

RANDOM_CHARS = 24

LOCAL = "L"
DURABLE = "D"
KINDS = (LOCAL, DURABLE)
"""A key's first character: a session kept by the process that made it (L), or one any process can continue
from the session store (D).  Set when the key is first handed out (``Registry.mark``)."""

ROUTE = re.compile(r"[A-Za-z0-9]{1,32}")
ROUTE_ENV = "LONGPOLL_ROUTE"


def check_route(name: object) -> str:
    """A route name as given, or ValueError saying what one may be."""
    if not isinstance(name, str) or not ROUTE.fullmatch(name):
        raise ValueError(f"a route is 1 to 32 letters and digits (it is put in session keys), not {name!r}")
    return name


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
