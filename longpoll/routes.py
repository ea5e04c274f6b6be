"""Which requests continue a long-poll session, and which endpoint answers them, apart from CherryPy.

Nearly every request a long-poll server sees continues a live session: it
carries a ``key`` (or an EventSource's ``Last-Event-ID``).  The fronts that
answer those without CherryPy's request machinery (:class:`~longpoll.fastpath.
FastPolls` under WSGI, ``asgi_front.py`` on an event loop) ask one function,
:func:`decide`, whether a request continues a poll, needs its body read
first, or is not theirs at all (first polls, other paths, other methods,
bodies they do not parse go to the app), and then one more,
:func:`Continuation.answer`, for the poll's steps, with the config CherryPy
would have given the path and the parameters read as CherryPy would have.

Only endpoints that need nothing of CherryPy's request are routed: their
``bind`` reads only the poll's parameters (``json_yield(fastpath=True)``,
the default without ``bind``), and their path's config turns on no tool
other than longpoll's own (an auth or session tool keeps its endpoint on the
CherryPy path, where the tool runs).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import cherrypy

from . import responses
from .clients import client_address
from .endpoint import Endpoint, endpoint_of
from .errors import BadRequest, LongPollError
from .params import NO_BODY, media_type, parse_json_body, request_params
from .responses import Answer
from .waits import Steps

KNOWN_TOOLS = frozenset({"longpoll_json_errors", "longpoll_cors", "longpoll_cors_preflight", "trailing_slash",
                         "encode", "decode", "log_tracebacks", "log_headers"})
"""Tools whose effect on a poll's answer the fast path has anyway (JSON errors, CORS through ``headers``),
or that change nothing in one (CherryPy's defaults: UTF-8 in and out, logging of errors it never raises)."""

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


Handler = Callable[["Continuation", bytes | None], "Steps[Answer] | None"]  # None: the app answers it
"""A request answered on the front itself, not a poll (a publish): given the request and its body (read
whole, for a POST), its steps end in the answer; a LongPollError they raise is answered as its status."""


class Route:
    __slots__ = ("endpoint", "handler", "config", "prefix", "methods", "first_polls")

    def __init__(self, endpoint: Endpoint | None, config: dict[str, Any], prefix: bool,
                 handler: Handler | None = None, methods: Iterable[str] = (), first_polls: bool = False):
        self.endpoint = endpoint
        self.first_polls = first_polls  # first polls too: the function needs nothing of CherryPy's request
        self.handler = handler
        self.config = config
        self.prefix = prefix  # the one path segment after the route's path is the handler's argument
        self.methods = frozenset(endpoint.allowed if endpoint is not None else methods)


class Routes:
    """The long-poll endpoints (and the handlers) a front answers itself, by path and method."""

    def __init__(self) -> None:
        self._exact: dict[str, list[Route]] = {}
        self._prefixes: list[tuple[str, Route]] = []

    def route(self, path: str, handler: Any, *, config: dict[str, Any] | None = None, prefix: bool = False,
              first_polls: bool = False) -> None:
        """Answer continuation polls of ``handler`` (a ``json_yield`` handler) at ``path``; with
        ``first_polls``, its first polls too: its function is then called without CherryPy's request (it
        reads only its parameters), off the event loop's thread.

        With ``prefix``, ``path`` ends with ``/`` and the one path segment after
        it is the handler's argument (``/topics/`` for ``/topics/<name>``).
        ``config`` is the request config CherryPy would give the path (its
        ``longpoll.*`` keys matter); by default it is looked up in ``cherrypy.tree``.
        """
        endpoint = endpoint_of(handler)
        if not getattr(endpoint, "fastpath", False):
            raise ValueError(f"{endpoint.name} needs CherryPy's request (its bind=); "
                             "json_yield(fastpath=True) says it does not")
        self._add(path, Route(endpoint, config if config is not None else path_config(path, handler), prefix,
                              first_polls=first_polls))

    def handle(self, path: str, handler: Handler, *, methods: Iterable[str] = ("POST",),
               config: dict[str, Any] | None = None, prefix: bool = False) -> None:
        """Answer ``methods`` at ``path`` with ``handler`` (a publish, say), without CherryPy's request: the
        same answer the app's own handler gives, which must be the same code (its steps run on a thread
        there)."""
        found = config if config is not None else path_config(path, None)
        self._add(path, Route(None, found, prefix, handler, tuple(m.upper() for m in methods)))

    def _add(self, path: str, route: Route) -> None:
        if route.prefix:
            self._prefixes.append((path, route))
        else:
            self._exact.setdefault(path, []).append(route)

    def discover(self) -> Routes:
        """Route every eligible ``json_yield`` handler exposed at a fixed path in ``cherrypy.tree``."""
        for script_name, app in cherrypy.tree.apps.items():
            root = getattr(app, "root", None)
            if root is None:
                continue
            for path, handler, chain in _exposed(root, script_name or ""):
                config = merged_config(app, path, chain)
                endpoint = endpoint_of(handler) if hasattr(handler, "endpoint") else None
                if endpoint is not None and endpoint.fastpath and eligible(config):
                    self._exact[path] = [Route(endpoint, config, False)]
        return self

    def match(self, path: str, method: str) -> tuple[Route, tuple[str, ...]] | None:
        """The route of a path for a method, with the path's argument for a prefix route."""
        for route in self._exact.get(path, ()):
            if method in route.methods:
                return route, ()
        for prefix, candidate in self._prefixes:
            rest = path[len(prefix):] if path.startswith(prefix) else ""
            if rest and "/" not in rest and method in candidate.methods:
                return candidate, (rest,)  # the path segment, as CherryPy passes it
        return None

    def __len__(self) -> int:
        return sum(map(len, self._exact.values())) + len(self._prefixes)


# -- the request ------------------------------------------------------------

class Continuation(NamedTuple):
    """A request that continues a session at a routed endpoint, or may once its body is read.

    ``headers`` are the request's, by lower-case name (a front passes what it has: only ``accept``,
    ``last-event-id``, ``content-type``, ``content-length``, ``transfer-encoding``, ``x-forwarded-for`` and,
    by a publish, ``idempotency-key`` are read).
    """

    route: Route
    args: tuple[str, ...]
    method: str
    query: str
    headers: Any
    peer: str
    body_needed: bool  # a POST: read its body (at most its Content-Length), then answer

    @property
    def length(self) -> int:
        return int(self.headers.get("content-length") or 0)

    def readable(self, raw: bytes | None) -> bool:
        """Whether the front reads this request's body (none, a form, JSON); another kind (multipart, say)
        only CherryPy reads: a handler then leaves the request to the app (returns None)."""
        kind = media_type(self.headers.get("content-type", ""))
        return not raw or kind in (FORM, JSON)

    def params(self, raw: bytes | None, max_chars: int) -> dict[str, Any]:
        """The request's parameters as a CherryPy handler gets them (the query's, and a form's or a JSON
        object's body), checked as ``request_params`` checks them: a LongPollError when they are bad."""
        kwargs, body = read_body(self.headers.get("content-type", ""), raw) if raw else ({}, NO_BODY)
        if isinstance(body, LongPollError):
            raise body
        merge(kwargs, self.query)
        return request_params(kwargs, max_chars, body=body)

    def answer(self, raw: bytes | None = None) -> Steps[Answer] | None:
        """The poll's steps, or None when it does not continue a session after all (the app answers it;
        its body, if read, must be given back to it)."""
        if self.route.handler is not None:
            steps = self.route.handler(self, raw)
            return None if steps is None else answered(steps)
        headers = self.headers
        kwargs, body = read_body(headers.get("content-type", ""), raw) if raw is not None else ({}, NO_BODY)
        last_event_id = headers.get("last-event-id")
        asked = continuation(kwargs, body, self.query, last_event_id)
        if asked is None:
            if not self.route.first_polls:
                return None
            asked = body  # a first poll, answered here too
        route, head = self.route, self.method == "HEAD"
        assert route.endpoint is not None
        return route.endpoint.steps(
            "GET" if head else self.method, self.args, kwargs, route.config, asked,
            lambda: address(self.peer, headers.get("x-forwarded-for"), route.config),
            accept=None if head else headers.get("accept"), last_event_id=last_event_id)


def answered(steps: Steps[Answer]) -> Steps[Answer]:
    """A handler's steps, a LongPollError they raise answered as the protocol says, and a bug as a 500 in its
    shape (the traceback in the log, never to the client)."""
    try:
        return (yield from steps)
    except LongPollError as exc:
        return responses.error(exc)
    except Exception:
        return responses.internal("a front handler")


def decide(routes: Routes | None, method: str, path: str, query: str, headers: Any, peer: str,
           largest: int) -> Continuation | None:
    """Whether a request continues a session at a routed endpoint (its :class:`Continuation`), or is the
    app's (None): the one decision both fast fronts make.  A POST is a continuation only with a form or JSON
    body of at most ``largest`` bytes, which the front reads before it asks for the answer."""
    found = routes.match(path, method) if routes is not None else None
    if found is None:
        return None
    route, args = found
    if route.handler is not None:  # a publish, say: a body of at most ``largest``, JSON or nothing
        if method not in ("POST", "PUT", "PATCH"):
            return Continuation(route, args, method, query, headers, peer, False)
        length = headers.get("content-length") or ""
        wanted = length.isdigit() and int(length) <= largest and "transfer-encoding" not in headers
        return Continuation(route, args, method, query, headers, peer, True) if wanted else None
    if method == "POST":
        wanted = body_wanted(method, headers.get("content-type", ""), headers.get("content-length") or "",
                             "transfer-encoding" in headers, largest)
        return Continuation(route, args, method, query, headers, peer, True) if wanted else None
    if not route.first_polls and "key=" not in query and not headers.get("last-event-id"):
        return None  # a first poll: the generator's own arguments, through the app
    return Continuation(route, args, method, query, headers, peer, False)


def body_wanted(method: str, content_type: str, length: str, chunked: bool, largest: int) -> bool:
    """Whether a POST's body is one this module reads (a form or JSON of a known, bounded length)."""
    kind = media_type(content_type)
    return method == "POST" and kind in (FORM, JSON) and length.isdigit() and int(length) <= largest \
        and not chunked


def read_body(content_type: str, raw: bytes) -> tuple[dict[str, Any], Any]:
    """The form parameters and the JSON body of a POST (a LongPollError in place of the body if malformed)."""
    if media_type(content_type) == JSON:
        try:
            return {}, parse_json_body(raw)
        except LongPollError as exc:
            return {}, exc
    kwargs: dict[str, Any] = {}
    try:
        merge(kwargs, raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, BadRequest("the form body is not valid UTF-8")
    except LongPollError as exc:
        return {}, exc
    return kwargs, NO_BODY


def continuation(kwargs: dict[str, Any], body: Any, query: str, last_event_id: str | None) -> Any:
    """The query merged into ``kwargs``; the body to pass on (a LongPollError when the query is malformed), or
    None when the request does not continue a session (a first poll: the app gets it)."""
    try:
        merge(kwargs, query)
    except LongPollError as exc:
        return exc
    if isinstance(body, LongPollError) or last_event_id or has_key(kwargs, body):
        return body
    return None


def merge(kwargs: dict[str, Any], text: str) -> None:
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


def has_key(kwargs: dict[str, Any], body: Any) -> bool:
    if kwargs.get("key"):
        return True
    return isinstance(body, dict) and bool(body.get("key"))


def address(peer: str, forwarded_for: str | None, config: dict[str, Any]) -> str:
    trusted = config.get("longpoll.trusted_proxies") or ()
    return client_address(peer, forwarded_for, (trusted,) if isinstance(trusted, str) else tuple(trusted))


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
