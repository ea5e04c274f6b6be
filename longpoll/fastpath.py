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

from . import logs, responses, sizing
from .errors import BadRequest, LongPollError, PayloadTooLarge, RequestTimeout
from .responses import status_line
from .routes import Routes, decide
from .waits import THREADS

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
        method = environ.get("REQUEST_METHOD", "GET")
        found = decide(self.routes, method, environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                       _Headers(environ), environ.get("REMOTE_ADDR", ""), self.max_body_bytes)
        if found is None:
            return self.app(environ, start_response)
        raw = None
        if found.body_needed:
            raw, error = self._read(environ, found.length)
            if error is not None:
                return self._send(environ, start_response, *responses.error(error))
        steps = found.answer(raw)
        if steps is None:
            return self.app(environ, start_response)
        self.answered += 1
        return self._send(environ, start_response, *THREADS.run(steps))

    def _send(self, environ: dict[str, Any], start_response: Callable[..., Any], status: int,
              headers: dict[str, str], answer: Any) -> Iterable[bytes]:
        out = list(headers.items())
        if self.headers is not None:
            out.extend(self.headers(environ))
        if not isinstance(answer, bytes):  # a stream: its frames as they are made
            start_response(status_line(status), out)
            logs.access(environ, status, None)
            return THREADS.frames(answer)
        out.append(("Content-Length", str(len(answer))))
        start_response(status_line(status), out)
        logs.access(environ, status, len(answer))
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else answer]

    @staticmethod
    def _read(environ: dict[str, Any], size: int) -> tuple[bytes, LongPollError | None]:
        """The body read in full (and put back, for the app if it is handed on after all)."""
        try:
            raw = environ["wsgi.input"].read(size) if size else b""
        except Exception as exc:  # the server's reader: a short body, a timeout
            status = getattr(exc, "longpoll_status", None) or getattr(exc, "status", 400)
            error: LongPollError = RequestTimeout("the request body did not arrive in time") if status == 408 \
                else PayloadTooLarge("the request body is too large") if status == 413 \
                else BadRequest("the request body could not be read")
            return b"", error
        if len(raw) < size:
            return b"", BadRequest("the request body is shorter than its Content-Length")
        environ["wsgi.input"] = io.BytesIO(raw)
        return raw, None


class _Headers:
    """A WSGI request's headers by lower-case name, as :func:`~longpoll.routes.decide` reads them."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]):
        self.environ = environ

    def get(self, name: str, default: Any = None) -> Any:
        key = name.upper().replace("-", "_")
        return self.environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key, default)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None
