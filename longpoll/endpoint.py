"""``json_yield``: a CherryPy handler whose generator is held across polls.

Each call of the endpoint is one poll of docs/protocol.md.  The first poll calls the
decorated function with the request's own parameters (all but ``key``,
``cursor``, ``timeout`` and ``max``) and keeps the iterator it returns in the
endpoint's registry; later polls take the next batch from it.  Errors, ours or
the generator's, answer in the protocol's JSON shape and never as a traceback.

A poll reads one way: the front parses it, the lifecycle finds its session
(this process's, or one taken over from the session store), the session
takes a batch (waiting while there is none), the store keeps it, and the
answer is framed: a JSON answer (``responses.py``), or a stream's events
(``transports.py``).

The poll itself (:meth:`Endpoint.answer`) knows nothing of CherryPy's
request and response objects, nor of how it waits: it takes the method, the
parameters and the request's config, and its steps (``waits.py``) end in the
status, headers and body, so the faster fronts than CherryPy's request
machinery (``fastpath.py``, ``asgi_front.py``) answer polls with exactly the
same code, on a thread or on an event loop.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import cherrypy
import orjson

from . import compat, encoding, plugin, responses, transports
from . import config as lpconfig
from .clients import request_address
from .errors import BadParameter, Expired, GeneratorFailed, LongPollError, MethodNotAllowed, NotFound
from .lifecycle import RECORD_MARGIN, Asked, Lifecycle, began
from .params import PollLimits, json_request_body, poll_params, request_params
from .registry import Registry, SessionLimits, canonical
from .responses import JSON_ERRORS, Answer, error_body
from .session import Poll
from .waits import HANDOFF, THREADS, Call, Steps

log = logging.getLogger("longpoll")

MAX_BODY_BYTES = 64 * 1024

OVERRUN_WARNING = 1.0
"""A poll answering this many seconds after its timeout is logged: its generator blocks."""

def json_yield(
    idle_timeout: float = 60.0,
    max_sessions: int = 10_000,
    *,
    methods: Iterable[str] = ("GET", "POST"),
    poll_limits: PollLimits = PollLimits(),
    session_limits: SessionLimits | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    bind: Callable[[dict[str, Any]], Any] | None = None,
    limit_per_bind: bool = False,
    registry: Registry | None = None,
    name: str | None = None,
    default: Callable[[Any], Any] | None = None,
    fastpath: bool | None = None,
    replay: bool = False,
) -> Callable[[Callable[..., Iterable[Any]]], Callable[..., Any]]:
    """Turn a generator function into a long-poll endpoint.

    A function that draws its items only from ``broker.feed(...)`` makes
    durable sessions on a Redis broker: any process continues them, after
    any restart (``feed.py``, ``durable.py``).  Other generators' sessions
    stay in the process that made them.

    ``bind`` computes a tag from each poll's parameters (it may raise a
    LongPollError, for example a 401).  A later poll whose tag differs from
    the one the session was created with is refused with 403, so a key cannot
    be used by another identity: ``bind=lambda params: cherrypy.request.login``
    ties sessions to the logged-in user.  With ``limit_per_bind`` the tag is
    also a client identity whose live sessions are capped
    (``SessionLimits.max_per_owner``).

    ``default`` encodes items that JSON has no type for (``Decimal``, ``set``,
    your own classes), as ``json.dumps(default=...)`` does.  An item that
    still cannot be encoded ends its session as ``generator_failed``, after
    the items before it are delivered.

    ``registry`` lets several endpoints share sessions' limits; by default
    each endpoint has its own, made with ``idle_timeout``, ``max_sessions``
    and ``session_limits``, which the ``longpoll.*`` config of the path it
    first answers on overrides (see ``config.py``).  ``name`` identifies the
    endpoint in stored sessions (default: the function's module and name).

    ``fastpath`` says whether :class:`~longpoll.fastpath.FastPolls` may answer
    continuation polls without CherryPy's request: true by default without
    ``bind``; say ``True`` for a ``bind`` that reads only the parameters.

    ``replay=True`` says the generator is a pure function of its parameters
    (it yields the same items, in the same order, whenever and wherever it is
    called with them, as ``primes`` does): its sessions are then continued by
    any process, which calls it again and skips what the client has, so they
    need no sticky routing.  Its keys carry the parameters, sealed with the
    session store's secret (a single process's own without one).

    The handler has ``registry`` and ``endpoint`` (the :class:`Endpoint`)
    attributes.  Used on a ``GET``/``POST`` method of a class (CherryPy's
    MethodDispatcher), it also makes the class's own errors JSON, so a method
    the resource lacks is a JSON 405.
    """
    if max_sessions != 10_000 and session_limits is not None:
        raise ValueError("give max_sessions or session_limits, not both")

    def decorate(func: Callable[..., Iterable[Any]]) -> Callable[..., Any]:
        _check_function(func)
        lpconfig.check_arguments(func, idle_timeout=idle_timeout, max_sessions=max_sessions, poll_limits=poll_limits,
                                 session_limits=session_limits, max_body_bytes=max_body_bytes)
        own = registry is None
        endpoint = Endpoint(func, registry if registry is not None else Registry(
            idle_timeout, session_limits=session_limits or SessionLimits(max_sessions=max_sessions),
            name=func.__qualname__), configurable=own, methods=methods, poll_limits=poll_limits,
            bind=bind, limit_per_bind=limit_per_bind, name=name, default=default,
            fastpath=bind is None if fastpath is None else fastpath, replay=replay)
        namespace = sys._getframe(1).f_locals
        method = "__qualname__" in namespace and "__module__" in namespace  # decorated in a class body

        @functools.wraps(func)
        def handler(*args: Any, **kwargs: Any) -> bytes | Iterator[bytes]:
            own_endpoint = endpoint.bound_to(args[0]) if method and args else endpoint
            request = cherrypy.serving.request
            try:
                body = json_request_body()
            except LongPollError as exc:
                body = exc
            steps = own_endpoint.steps(
                request.method, args[1:] if method else args, kwargs, request.config, body, request_address,
                _release_session_lock, accept=request.headers.get("Accept"),
                last_event_id=request.headers.get("Last-Event-ID"))
            handoff = HANDOFF.get()
            answer = handoff.run(steps) if handoff is not None else THREADS.run(steps)
            if answer is None:
                return b""  # the event loop answers (see waits.Handoff)
            status, headers, out = answer
            response = cherrypy.serving.response
            response.status = status
            response.headers.update(headers)
            if isinstance(out, bytes):
                return out
            if handoff is not None:
                handoff.frames(out, headers)
                return b""
            response.stream = True  # a stream's frames go out as they are made
            return THREADS.frames(out)

        handler.endpoint = endpoint  # type: ignore[attr-defined]
        handler.registry = endpoint.registry  # type: ignore[attr-defined]
        handler._cp_config = {**JSON_ERRORS, "request.body.maxbytes": max_body_bytes}  # type: ignore[attr-defined]
        if method:
            _json_errors_for_resource(func.__name__, namespace)
        return handler

    return decorate


def endpoint_of(handler: Any) -> Endpoint:
    """The endpoint a ``json_yield`` handler answers with; for a method, the one of its instance."""
    instance = getattr(handler, "__self__", None)
    function = getattr(handler, "__func__", handler)
    endpoint: Endpoint = getattr(function, "endpoint", handler)
    return endpoint.bound_to(instance) if instance is not None else endpoint


def _check_function(func: Any) -> None:
    """What can be known wrong at decoration is said then, not at the first poll."""
    if not callable(func):
        raise TypeError(f"json_yield decorates a function, not {type(func).__name__}")
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(f"json_yield cannot use {func.__qualname__}: it is async; give it a plain generator "
                        "function (or one that returns an iterable), and yield a Signal or a feed's items to wait")


def _json_errors_for_resource(name: str, namespace: dict[str, Any]) -> None:
    """Under MethodDispatcher, a method the resource class lacks (DELETE) is answered by
    CherryPy from the class's config, never reaching a handler: give the class JSON errors.
    ``namespace`` is where the decorator was applied; a class body has ``__qualname__``
    and ``__module__`` (the frame trick ``cherrypy.expose`` uses for aliases)."""
    if name.isupper() and "__qualname__" in namespace and "__module__" in namespace:
        namespace["_cp_config"] = {**JSON_ERRORS, **namespace.get("_cp_config", {})}


def module_name(func: Callable[..., Any]) -> str:
    """The function's module as an import names it, also when it is the script that runs: an app started as
    ``python app.py`` in one process and imported as ``app`` by uvicorn or gunicorn in another must name its
    endpoints alike, or the durable sessions of one are refused by the other."""
    module = func.__module__
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # python -m package.app
        return spec.name.removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    return os.path.splitext(os.path.basename(path))[0] if path else module


class Endpoint:
    """A long-poll endpoint's poll, apart from CherryPy's request and response objects."""

    def __init__(self, func: Callable[..., Iterable[Any]], registry: Registry, *, configurable: bool,
                 methods: Iterable[str], poll_limits: PollLimits, bind: Callable[[dict[str, Any]], Any] | None,
                 limit_per_bind: bool, name: str | None, default: Callable[[Any], Any] | None,
                 fastpath: bool = False, replay: bool = False):
        allowed = tuple(m.upper() for m in methods)
        self.allowed = allowed + (("HEAD",) if "GET" in allowed and "HEAD" not in allowed else ())
        self.func = func
        self.signature = inspect.signature(func)
        self.name = name or f"{module_name(func)}.{func.__qualname__}"  # a key only works where it was made
        self.registry = registry
        self.lifecycle = Lifecycle(registry)
        self.poll_limits = poll_limits
        self.bind = bind
        self.limit_per_bind = limit_per_bind
        self.fastpath = fastpath
        self.replay = replay
        self.overrun_warning = OVERRUN_WARNING
        self.encode = functools.partial(_encode, default=default)
        self._configurable = configurable  # its own registry: the path's longpoll.* config applies
        self._configured: dict[str, Any] | None = None
        self._attached = False
        self._bound: weakref.WeakKeyDictionary[Any, Endpoint] = weakref.WeakKeyDictionary()

    def bound_to(self, instance: Any) -> Endpoint:
        """This endpoint calling its function as a method of ``instance`` (sessions and limits shared), the
        same object every time, so that CherryPy and the fast path answer alike."""
        try:
            return self._bound[instance]
        except KeyError:
            pass
        except TypeError:  # not weakly referable, or unhashable: bound anew each time
            return self._bind(instance)
        bound = self._bound[instance] = self._bind(instance)
        return bound

    def _bind(self, instance: Any) -> Endpoint:
        bound = copy.copy(self)
        bound.func = functools.partial(self.func, instance)
        bound.signature = inspect.signature(bound.func)
        bound._bound = weakref.WeakKeyDictionary()
        return bound

    def _configure(self, config: dict[str, Any]) -> None:
        """Apply the path's registry settings once, at the first request (one registry per endpoint)."""
        self._configured = lpconfig.registry_settings(config)
        if self._configured:
            self.registry.configure(**self._configured)

    def check_overrun(self, started: float, timeout: float) -> None:
        """A poll answered well after its timeout means a generator that blocks a thread (or the loop) instead
        of yielding a Signal: say which endpoint, since nothing else would."""
        late = time.monotonic() - started - timeout
        if late > self.overrun_warning:
            log.warning("a poll of %s answered %.1f s after its timeout: its generator blocks instead of "
                        "yielding a Signal", self.name, late)

    def answer(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], config: dict[str, Any],
               body: Any, address: Callable[[], str], *, accept: str | None = None,
               last_event_id: str | None = None) -> Answer:
        """:meth:`steps`, run on this thread (a test's, a script's): a stream's body is its frames."""
        status, headers, out = THREADS.run(self.steps(method, args, kwargs, config, body, address, accept=accept,
                                                      last_event_id=last_event_id))
        return status, headers, out if isinstance(out, bytes) else THREADS.frames(out)  # type: ignore[return-value]

    def steps(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], config: dict[str, Any],
              body: Any, address: Callable[[], str], before_wait: Callable[[], None] | None = None, *,
              accept: str | None = None, last_event_id: str | None = None) -> Steps[Answer]:
        """One poll, or a stream, as steps (``waits.py``) that end in its status, headers and body (bytes, or
        a stream's steps), never in an exception.

        ``kwargs`` are the query and form parameters, ``body`` the parsed JSON
        body (``params.NO_BODY`` for none, or the LongPollError reading it
        raised), ``config`` the request's config and ``address()`` the client's
        address (asked only when a session is made).  ``before_wait()`` runs
        before the poll first waits.  ``accept`` asking for a stream (SSE, JSON
        lines) makes one, which ``last_event_id`` (``<key>.<cursor>``) resumes.
        """
        since = began()  # of two polls of one session, the newer wins (lifecycle.py)
        transport = transports.negotiate(accept) if method == "GET" or method == "POST" else None
        try:
            if method not in self.allowed:
                raise MethodNotAllowed(method, self.allowed)
            if isinstance(body, LongPollError):
                raise body
            if self._configurable and self._configured is None:
                self._configure(config)
            if not self._attached:
                self._attached = True
                plugin.attach(self.registry)  # expiry, and the quick stop
            limits = lpconfig.poll_limits(config, self.poll_limits)
            del config  # CherryPy's merged config of this request: not kept while the poll is held
            params = request_params(kwargs, limits.max_param_chars, body)
            resumed = transports.last_event_id(last_event_id) if transport is not None else None
            if resumed is not None:  # EventSource's reconnect: the newest event it has says where it is
                params.pop("key", None)
                params.pop("cursor", None)
                params["key"], params["cursor"] = resumed
            asked = poll_params(params, limits)
            bound = self.bind(params) if self.bind is not None else None
            tag = (self.name, canonical([bound, *args] if args else bound))  # a key works where it was made
            registry = self.registry
            ttl = registry.idle_timeout + RECORD_MARGIN  # a durable session's record, after each poll
            poll = Poll(asked.cursor, 0.0 if registry.stopping else asked.timeout, asked.max_items, self.encode,
                        registry.gate, before_wait=before_wait, max_bytes=limits.max_batch_bytes)
            started = time.monotonic()
            if asked.key is None:
                # The function is called off an event loop's thread: its first call may do what a generator's
                # steps must not (read a backfill, open a query).
                held = yield Call(self.lifecycle.create, lambda: self._start(args, params), tag, ttl, self._rebuild,
                                  str(tag[1]) if self.limit_per_bind else None, address(), self._origin(args, params),
                                  self.replay, off_loop=True)
            else:
                arrived = Asked(since, max(limits.max_timeout, limits.heartbeat),
                                str(tag[1]) if self.limit_per_bind else None, address)
                try:
                    held = yield from self.lifecycle.find(asked.key, tag, ttl, self._rebuild, asked.cursor, arrived)
                except Expired as exc:
                    if transport == transports.SSE:
                        return transports.expired(exc)
                    raise
            if transport is not None:
                return 200, transports.headers(transport), transports.stream(self.lifecycle, held, poll, limits,
                                                                             transport)
            batch = yield from self.lifecycle.take(held, poll)
            self.check_overrun(started, poll.timeout)
            return responses.batch(held.session.key, batch)
        except LongPollError as exc:
            return responses.error(exc)
        except Exception:
            return responses.internal(self.name)

    # -- the recipe ------------------------------------------------------------------

    def _origin(self, args: tuple[Any, ...], params: dict[str, Any]) -> dict[str, Any] | None:
        """What names this session's recipe in the session store; None when it cannot be stored as JSON."""
        origin = {"endpoint": self.name, "args": list(args), "params": params}
        try:
            orjson.dumps(origin)
        except TypeError:
            return None
        return origin

    def _rebuild(self, origin: dict[str, Any]) -> Callable[[], Any]:
        args, params = tuple(origin.get("args", ())), dict(origin.get("params", {}))
        return lambda: self._start(args, params)

    def _start(self, args: tuple[Any, ...], params: dict[str, Any]) -> Any:
        """Call the generator function with the request's own parameters."""
        try:
            self.signature.bind(*args, **params)
        except TypeError:
            raise _binding_error(self.signature, args, params) from None
        try:
            made = self.func(*args, **params)
        except LongPollError:
            raise
        except Exception as exc:
            log.exception("starting a session of %s raised", self.name)
            raise GeneratorFailed(f"starting the session raised {type(exc).__name__}") from None
        if isinstance(made, (str, bytes, dict)) or not hasattr(made, "__iter__"):
            raise GeneratorFailed(f"{self.name} returned {type(made).__name__}, not an iterator: a json_yield "
                                  "function is a generator, or returns an iterable (a feed, say)")
        return made


def _release_session_lock() -> None:
    """A held poll must not hold its user's CherryPy session lock (tools.sessions' implicit or early
    locking), or every other page of theirs waits for it: save the session now, which releases it, and
    mark it saved so CherryPy's own save at the end does nothing (a FileSession would assert it locked).
    What the generator writes to the session afterwards is not saved."""
    session = getattr(cherrypy.serving, "session", None)
    if session is not None and getattr(session, "locked", False):
        session.save()
        compat.session_saved(cherrypy.serving.request)


def _encode(item: Any, default: Callable[[Any], Any] | None) -> bytes:
    """An item of the generator's own as JSON, once, when it is taken (one from the log is sent as the JSON
    it came as: see ``Session``)."""
    return encoding.dumps(item, default)


def json_handler(*methods: str) -> Callable[[Callable[..., bytes]], Callable[..., bytes]]:
    """A plain JSON endpoint beside the polls (``@cherrypy.expose`` above it): other methods get 405, and a
    LongPollError raised inside becomes its JSON error answer; the function returns :func:`json_body`'s
    bytes."""

    def decorate(func: Callable[..., bytes]) -> Callable[..., bytes]:
        @functools.wraps(func)
        def handler(*args: Any, **kwargs: Any) -> bytes:
            method = cherrypy.serving.request.method
            try:
                if method not in methods:
                    raise MethodNotAllowed(method, methods)
                return func(*args, **kwargs)
            except LongPollError as exc:
                return error_body(exc)

        return handler

    return decorate


def _binding_error(signature: inspect.Signature, args: tuple[Any, ...], params: dict[str, Any]) -> LongPollError:
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        for name in params:
            parameter = signature.parameters.get(name)
            if parameter is None or parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                return BadParameter(name, "unknown parameter")
    positional = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(args)]
    for name in positional:
        if name in params:
            return BadParameter(name, "given by the path already")
    try:
        bound = signature.bind_partial(*args, **params)
    except TypeError:
        return NotFound("no such resource")  # more path segments than the handler takes
    for name, parameter in signature.parameters.items():
        if (parameter.default is inspect.Parameter.empty and name not in bound.arguments
                and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)):
            return BadParameter(name, "required")
    return NotFound("no such resource")
