"""Cross-origin polling, closed unless origins are configured.

A page on another origin may poll only if its exact origin is listed
(``longpoll serve --cors-origin https://app.example``; ``*`` allows any, which
is only sane without credentials).  Preflight requests are answered here,
before any handler runs, so handlers never see ``OPTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import cherrypy

MAX_AGE = "600"


def _allowed(origins: tuple[str, ...], origin: str | None = None) -> str | None:
    if origin is None:
        origin = cherrypy.serving.request.headers.get("Origin")
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def answer_headers(allowed: str) -> dict[str, str]:
    """What marks an answer readable by a page of an allowed origin."""
    return {"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": "Retry-After", "Vary": "Origin"}


def preflight(origins: tuple[str, ...] = ()) -> None:
    """``hooks.before_handler``: answer an allowed CORS preflight with 204."""
    request = cherrypy.serving.request
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return
    allowed = _allowed(origins)
    response = cherrypy.serving.response
    request.handler = None  # no handler runs for a preflight
    response.status = 204 if allowed else 403
    response.body = b""
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Max-Age"] = MAX_AGE
        response.headers["Vary"] = "Origin"


def headers(origins: tuple[str, ...] = ()) -> None:
    """``hooks.before_finalize``: mark an allowed cross-origin answer readable."""
    allowed = _allowed(origins)
    if allowed:
        cherrypy.serving.response.headers.update(answer_headers(allowed))


def asgi_headers(origins: tuple[str, ...]) -> Callable[[MutableMapping[str, Any]], list[tuple[str, str]]] | None:
    """The same headers for answers made on the event loop (``longpoll.asgi``), from the ASGI scope; None when
    no origin is allowed (nothing to look for in each request's headers)."""
    if not origins:
        return None

    def headers(scope: MutableMapping[str, Any]) -> list[tuple[str, str]]:
        origin = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"origin"), "")
        allowed = _allowed(origins, origin)
        return list(answer_headers(allowed).items()) if allowed else []

    return headers


cherrypy.tools.longpoll_cors_preflight = cherrypy.Tool("before_handler", preflight)
cherrypy.tools.longpoll_cors = cherrypy.Tool("before_finalize", headers)


def config(origins: tuple[str, ...]) -> dict[str, object]:
    """App config entries that enable CORS for the given origins (none: closed)."""
    if not origins:
        return {}
    return {"tools.longpoll_cors_preflight.on": True, "tools.longpoll_cors_preflight.origins": tuple(origins),
            "tools.longpoll_cors.on": True, "tools.longpoll_cors.origins": tuple(origins)}
