"""Continuation polls answered below CherryPy's request machinery, under any WSGI server.

CherryPy spends most of a poll's time in its own machinery (building the
request and response, dispatching, merging config, running hooks and tools).
:class:`FastPolls` is a WSGI layer in front of a CherryPy app that answers
the polls that continue a session itself, through the very same
:meth:`Endpoint.answer <longpoll.endpoint.Endpoint.answer>` as the CherryPy
handler, with the config CherryPy would have given the path; everything else
goes through to the app untouched.  Which requests, and which endpoints, is
``routes.py``'s to say.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import cherrypy

from . import logs, sizing
from .errors import BadRequest, LongPollError, PayloadTooLarge, RequestTimeout
from .params import NO_BODY
from .responses import status_line
from .routes import Routes, address, body_wanted, continuation, read_body

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = Callable[[dict[str, Any]], list[tuple[str, str]]]


class FastPolls:
    """WSGI middleware: continuation polls of ``json_yield`` endpoints, answered without CherryPy.

    ``headers(environ)`` adds headers to every answer it makes (CORS, say);
    ``max_body_bytes`` is the largest form or JSON body it reads (larger
    ones go to the app, which refuses them as it always does).
    """

    def __init__(self, app: WSGIApp | None = None, *, headers: Headers | None = None,
                 max_body_bytes: int = 64 * 1024, routes: Routes | None = None):
        self.app = app if app is not None else cherrypy.tree
        self.headers = headers
        self.max_body_bytes = max_body_bytes
        self.routes = routes if routes is not None else Routes()
        self.answered = 0  # polls it answered itself

    def route(self, path: str, handler: Any, *, config: dict[str, Any] | None = None, prefix: bool = False) -> None:
        """See :meth:`Routes.route`."""
        self.routes.route(path, handler, config=config, prefix=prefix)

    def discover(self) -> FastPolls:
        """Route every eligible ``json_yield`` handler exposed at a fixed path in ``cherrypy.tree``."""
        self.routes.discover()
        return self

    def __len__(self) -> int:
        return len(self.routes)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sizing.serving(environ)  # the hold gate reads the server from it
        found = self.routes.match(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "GET")
        if found is None or method not in found[0].methods:
            return self.app(environ, start_response)
        route, args = found
        query = environ.get("QUERY_STRING", "")
        last_event_id = environ.get("HTTP_LAST_EVENT_ID")
        kwargs: dict[str, Any] = {}
        body: Any = NO_BODY
        if method == "POST":
            if not body_wanted(method, environ.get("CONTENT_TYPE", ""), environ.get("CONTENT_LENGTH") or "",
                               "HTTP_TRANSFER_ENCODING" in environ, self.max_body_bytes):
                return self.app(environ, start_response)
            kwargs, body = self._read(environ)
        elif "key=" not in query and not last_event_id:
            return self.app(environ, start_response)  # a first poll: the generator's own arguments
        body = continuation(kwargs, body, query, last_event_id)
        if body is None:
            return self.app(environ, start_response)
        head = method == "HEAD"
        status, headers, answer = route.endpoint.answer(
            "GET" if head else method, args, kwargs, route.config, body,
            lambda: address(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR"), route.config),
            accept=None if head else environ.get("HTTP_ACCEPT"), last_event_id=last_event_id)
        out = list(headers.items())
        if self.headers is not None:
            out.extend(self.headers(environ))
        self.answered += 1
        if not isinstance(answer, bytes):  # a stream: its frames as they are made
            start_response(status_line(status), out)
            logs.access(environ, status, None)
            return answer
        out.append(("Content-Length", str(len(answer))))
        start_response(status_line(status), out)
        logs.access(environ, status, len(answer))
        return [b"" if head else answer]

    def _read(self, environ: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The body read in full (and put back, for the app if it is handed on after all)."""
        size = int(environ["CONTENT_LENGTH"])
        try:
            raw = environ["wsgi.input"].read(size) if size else b""
        except Exception as exc:  # the server's reader: a short body, a timeout
            status = getattr(exc, "longpoll_status", None) or getattr(exc, "status", 400)
            error: LongPollError = RequestTimeout("the request body did not arrive in time") if status == 408 \
                else PayloadTooLarge("the request body is too large") if status == 413 \
                else BadRequest("the request body could not be read")
            return {}, error
        if len(raw) < size:
            return {}, BadRequest("the request body is shorter than its Content-Length")
        environ["wsgi.input"] = io.BytesIO(raw)
        return read_body(environ.get("CONTENT_TYPE", ""), raw)
