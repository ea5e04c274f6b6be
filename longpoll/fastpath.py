"""Continuation polls answered below CherryPy's request machinery.

Nearly every request a long-poll server sees continues a live session: it
carries a ``key``.  CherryPy spends most of such a request in its own
machinery (building the request and response, dispatching, merging config,
running hooks and tools: 540-640 µs under gevent, against tens of µs for the
poll itself).  :class:`FastPolls` is a WSGI layer in front of a CherryPy
app that answers those polls itself, through the very same
:meth:`Endpoint.answer <longpoll.endpoint.Endpoint.answer>` as the CherryPy
handler, with the config CherryPy would have given the path; everything else
(first polls, other paths, other methods, bodies it does not parse) goes
through to the app untouched.

It only takes endpoints that need nothing of CherryPy's request: their
``bind`` reads only the poll's parameters (``json_yield(fastpath=True)``,
the default without ``bind``), and their path's config turns on no tool
other than longpoll's own (an auth or session tool keeps its endpoint on the
CherryPy path, where the tool runs).
"""

from __future__ import annotations

import io
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import cherrypy

from . import logs
from .clients import client_address
from .endpoint import endpoint_of
from .errors import BadRequest, LongPollError, PayloadTooLarge, RequestTimeout
from .params import NO_BODY, parse_json_body

log = logging.getLogger("longpoll")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = Callable[[dict[str, Any]], list[tuple[str, str]]]

KNOWN_TOOLS = frozenset({"longpoll_json_errors", "longpoll_cors", "longpoll_cors_preflight", "trailing_slash",
                         "encode", "decode", "log_tracebacks", "log_headers"})
"""Tools whose effect on a poll's answer the fast path has anyway (JSON errors, CORS through ``headers``),
or that change nothing in one (CherryPy's defaults: UTF-8 in and out, logging of errors it never raises)."""

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

STATUS_LINES = {status: f"{status} {reason}" for status, reason in (
    (200, "OK"), (400, "Bad Request"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found"),
    (405, "Method Not Allowed"), (408, "Request Timeout"), (409, "Conflict"), (410, "Gone"),
    (413, "Content Too Large"), (429, "Too Many Requests"), (500, "Internal Server Error"),
    (503, "Service Unavailable"))}


class Route:
    __slots__ = ("endpoint", "config", "param", "methods")

    def __init__(self, endpoint: Any, config: dict[str, Any], param: str | None):
        self.endpoint = endpoint
        self.config = config
        self.param = param  # a prefix route: the rest of the path is this parameter
        self.methods = frozenset(endpoint.allowed)


class FastPolls:
    """WSGI middleware: continuation polls of ``json_yield`` endpoints, answered without CherryPy.

    ``headers(environ)`` adds headers to every answer it makes (CORS, say);
    ``max_body_bytes`` is the largest form or JSON body it reads (larger
    ones go to the app, which refuses them as it always does).
    """

    def __init__(self, app: WSGIApp | None = None, *, headers: Headers | None = None,
                 max_body_bytes: int = 64 * 1024):
        self.app = app if app is not None else cherrypy.tree
        self.headers = headers
        self.max_body_bytes = max_body_bytes
        self._exact: dict[str, Route] = {}
        self._prefixes: list[tuple[str, Route]] = []
        self.answered = 0  # polls it answered itself

    # -- which paths -----------------------------------------------------

    def route(self, path: str, handler: Any, *, config: dict[str, Any] | None = None,
              param: str | None = None) -> None:
        """Answer continuation polls of ``handler`` (a ``json_yield`` handler) at ``path``.

        With ``param``, ``path`` is a prefix and the one path segment after it
        is that parameter (``/topics/`` with ``param="topic"``).  ``config``
        is the request config CherryPy would give the path (its ``longpoll.*``
        keys matter); by default it is looked up in ``cherrypy.tree``.
        """
        endpoint = endpoint_of(handler)
        if not getattr(endpoint, "fastpath", False):
            raise ValueError(f"{endpoint.name} needs CherryPy's request (its bind=); "
                             "json_yield(fastpath=True) says it does not")
        found = config if config is not None else path_config(path, handler)
        route = Route(endpoint, found, param)
        if param is None:
            self._exact[path] = route
        else:
            self._prefixes.append((path, route))

    def discover(self) -> FastPolls:
        """Route every eligible ``json_yield`` handler exposed at a fixed path in ``cherrypy.tree``."""
        for script_name, app in cherrypy.tree.apps.items():
            root = getattr(app, "root", None)
            if root is None:
                continue
            for path, handler, chain in _exposed(root, script_name or ""):
                config = merged_config(app, path, chain)
                endpoint = endpoint_of(handler) if hasattr(handler, "endpoint") else None
                if endpoint is not None and endpoint.fastpath and eligible(config):
                    self._exact[path] = Route(endpoint, config, None)
        return self

    def __len__(self) -> int:
        return len(self._exact) + len(self._prefixes)

    # -- the requests ----------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        route = self._exact.get(path)
        args: tuple[str, ...] = ()
        if route is None:
            for prefix, candidate in self._prefixes:
                rest = path[len(prefix):] if path.startswith(prefix) else ""
                if rest and "/" not in rest:
                    route, args = candidate, (rest,)  # the path segment, as CherryPy passes it
                    break
            if route is None:
                return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in route.methods:
            return self.app(environ, start_response)
        query = environ.get("QUERY_STRING", "")
        body: Any = NO_BODY
        kwargs: dict[str, Any] | None
        if method == "POST":
            taken = self._post(environ)
            if taken is None:
                return self.app(environ, start_response)
            kwargs, body = taken
        elif "key=" not in query and not environ.get("HTTP_LAST_EVENT_ID"):
            return self.app(environ, start_response)  # a first poll: the generator's own arguments
        else:
            kwargs = {}
        try:
            _merge(kwargs, query)
        except LongPollError as exc:
            body = exc
        if not isinstance(body, LongPollError) and not _has_key(kwargs, body) \
                and not environ.get("HTTP_LAST_EVENT_ID"):
            return self.app(environ, start_response)
        head = method == "HEAD"
        status, headers, answer = route.endpoint.answer(
            "GET" if head else method, args, kwargs, route.config, body, lambda: _address(environ, route.config),
            accept=None if head else environ.get("HTTP_ACCEPT"), last_event_id=environ.get("HTTP_LAST_EVENT_ID"))
        out = list(headers.items())
        if self.headers is not None:
            out.extend(self.headers(environ))
        self.answered += 1
        if not isinstance(answer, bytes):  # a stream: its frames as they are made
            start_response(STATUS_LINES.get(status) or str(status), out)
            logs.access(environ, status, None)
            return answer
        out.append(("Content-Length", str(len(answer))))
        start_response(STATUS_LINES.get(status) or str(status), out)
        logs.access(environ, status, len(answer))
        return [b"" if head else answer]

    def _post(self, environ: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
        """A form or JSON body read in full, or None to leave the request to the app (its body unread,
        or put back as it was)."""
        content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        length = environ.get("CONTENT_LENGTH") or ""
        if content_type not in (FORM, JSON) or not length.isdigit() or int(length) > self.max_body_bytes \
                or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        size = int(length)
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
        environ["wsgi.input"] = io.BytesIO(raw)  # for the app, if it is handed on after all
        if content_type == JSON:
            try:
                return {}, parse_json_body(raw)
            except LongPollError as exc:
                return {}, exc
        kwargs: dict[str, Any] = {}
        try:
            _merge(kwargs, raw.decode("utf-8"))
        except UnicodeDecodeError:
            return {}, BadRequest("the form body is not valid UTF-8")
        except LongPollError as exc:
            return {}, exc
        return kwargs, NO_BODY


def _merge(kwargs: dict[str, Any], text: str) -> None:
    """Query or form parameters into kwargs as CherryPy gives them: a name given twice is a list, and ``;``
    separates parameters as ``&`` does."""
    if not text:
        return
    text = text.replace(";", "&")
    if "%" in text or "+" in text or not text.isascii():
        try:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("the query string is not valid UTF-8") from None
    else:  # nothing to unquote (a poll's key and cursor): parse_qsl's answer, at a fifth of its cost
        pairs = [(name, value) for name, _, value in (part.partition("=") for part in text.split("&") if part)]
    for name, value in pairs:
        if name in kwargs:
            given = kwargs[name]
            kwargs[name] = [*given, value] if isinstance(given, list) else [given, value]
        else:
            kwargs[name] = value


def _has_key(kwargs: dict[str, Any], body: Any) -> bool:
    if kwargs.get("key"):
        return True
    return isinstance(body, dict) and bool(body.get("key"))


def _address(environ: dict[str, Any], config: dict[str, Any]) -> str:
    trusted = config.get("longpoll.trusted_proxies") or ()
    return client_address(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR"),
                          (trusted,) if isinstance(trusted, str) else tuple(trusted))


# -- CherryPy's config for a path -----------------------------------------

def eligible(config: dict[str, Any]) -> bool:
    """No tool turned on but longpoll's own, and no hooks but JSON errors': nothing the fast path would skip."""
    for key, value in config.items():
        if key.startswith("tools.") and key.endswith(".on") and value and key[6:-3] not in KNOWN_TOOLS:
            return False
        if key.startswith("hooks.") and not getattr(value, "__module__", "").startswith("longpoll."):
            return False
    return True


def merged_config(app: Any, path: str, chain: list[Any]) -> dict[str, Any]:
    """What CherryPy's request.config holds for ``path``: global, the app's sections down the path,
    and the ``_cp_config`` of each object on the way (the handler last)."""
    config: dict[str, Any] = dict(cherrypy.config)
    local = path[len(app.script_name):] or "/"
    sections = ["/"] + ["/".join(local.split("/")[:n]) for n in range(2, local.count("/") + 2)]
    for section in sections:
        config.update(app.config.get(section, {}))
    for obj in chain:
        config.update(getattr(obj, "_cp_config", {}))
    return config


def path_config(path: str, handler: Any) -> dict[str, Any]:
    """The config CherryPy gives ``path`` in whichever app of ``cherrypy.tree`` serves it."""
    script_name = cherrypy.tree.script_name(path)
    app = cherrypy.tree.apps.get(script_name) if script_name is not None else None
    if app is None:
        return {**cherrypy.config, **getattr(handler, "_cp_config", {})}
    return merged_config(app, path, [app.root, handler])


def _exposed(root: Any, prefix: str, depth: int = 6) -> Iterable[tuple[str, Any, list[Any]]]:
    """(path, handler, objects on the way) of each exposed callable under root, a few levels deep."""
    stack = [(root, prefix, [root])]
    seen: set[int] = set()
    while stack:
        node, path, chain = stack.pop()
        if id(node) in seen or len(chain) > depth:
            continue
        seen.add(id(node))
        for name in dir(node):
            if name.startswith("_"):
                continue
            try:
                child = getattr(node, name)
            except Exception:
                continue
            if callable(child) and getattr(child, "exposed", False):
                # CherryPy finds sample_json for /sample.json too (each "." of the URL is tried as "_")
                for segment in {name, name.replace("_", ".")} if name != "index" else {""}:
                    yield f"{path}/{segment}".rstrip("/") or "/", child, [*chain, child]
            elif not callable(child) and getattr(child, "exposed", True) and hasattr(child, "__dict__") \
                    and not isinstance(child, (str, bytes, int, float, dict, list, tuple)):
                stack.append((child, f"{path}/{name}", [*chain, child]))
