"""``json_yield``: a CherryPy handler whose generator is held across polls.

Each call of the endpoint is one poll of PROTOCOL.md.  The first poll calls the
decorated function with the request's own parameters (all but ``key``,
``cursor``, ``timeout`` and ``max``) and keeps the iterator it returns in the
endpoint's registry; later polls take the next batch from it.  Errors, ours or
the generator's, answer in the protocol's JSON shape and never as a traceback.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

import cherrypy

from .errors import BadParameter, Expired, Forbidden, GeneratorFailed, LongPollError, MethodNotAllowed, NotFound
from .params import PollLimits, poll_params, request_params
from .registry import Registry, Resume
from .responses import JSON_ERRORS, error_body, json_body

log = logging.getLogger("longpoll")

MAX_BODY_BYTES = 64 * 1024


def json_yield(
    idle_timeout: float = 60.0,
    max_sessions: int = 10_000,
    *,
    methods: Iterable[str] = ("GET", "POST"),
    limits: PollLimits = PollLimits(),
    max_body_bytes: int = MAX_BODY_BYTES,
    bind: Callable[[dict[str, Any]], Any] | None = None,
    limit_per_bind: bool = False,
    registry: Registry | None = None,
    resume: Resume | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Iterable[Any]]], Callable[..., bytes]]:
    """Turn a generator function into a long-poll endpoint.

    ``bind``, if given, computes a tag from each poll's parameters (it may raise
    a LongPollError, for example a 401); a later poll whose tag differs from the
    one the session was created with is refused, so a key cannot be used by
    another identity; with ``limit_per_bind`` the tag is also a client identity
    whose live sessions the registry caps (``SessionLimits.max_per_owner``).
    ``registry`` lets several endpoints share one session limit; by default
    each endpoint has its own.

    ``resume(definition, position)`` rebuilds a session's iterator in another
    process (with a registry that has a session store): the decorated function
    must then return an iterator with ``definition`` (JSON) and ``position``
    attributes.  ``name`` identifies the endpoint in stored sessions; it
    defaults to the function's qualified name.
    """
    allowed = tuple(m.upper() for m in methods)

    def decorate(func: Callable[..., Iterable[Any]]) -> Callable[..., bytes]:
        reg = registry if registry is not None else Registry(idle_timeout, max_sessions, name=func.__qualname__)
        signature = inspect.signature(func)
        endpoint = name or f"{func.__module__}.{func.__qualname__}"  # a key only works where it was made

        @functools.wraps(func)
        def handler(*args: Any, **kwargs: Any) -> bytes:
            try:
                method = cherrypy.serving.request.method
                if method not in allowed:
                    raise MethodNotAllowed(method, allowed)
                params = request_params(kwargs, limits.max_param_chars)
                poll = poll_params(params, limits)
                tag = bind(params) if bind is not None else None
                if poll.key is None:
                    session = reg.create(_start(func, signature, args, params), (endpoint, tag),
                                         str(tag) if limit_per_bind else None)
                else:
                    session = reg.get(poll.key, resume)
                    if session.tag[0] != endpoint:
                        raise Expired()
                    if session.tag[1] != tag:
                        raise Forbidden("this session key was made for another identifier or resource")
                batch = reg.poll(session, poll.cursor, poll.timeout, poll.max_items)
                return json_body(200, batch.to_json(session.key))
            except LongPollError as exc:
                return error_body(exc)
            except Exception:
                log.exception("unexpected error in long-poll endpoint %s", func.__qualname__)
                return error_body(LongPollError("internal error; the server log has the details"))

        handler.registry = reg  # type: ignore[attr-defined]
        handler._cp_config = {**JSON_ERRORS, "request.body.maxbytes": max_body_bytes}  # type: ignore[attr-defined]
        return handler

    return decorate


def json_handler(*methods: str) -> Callable[[Callable[..., bytes]], Callable[..., bytes]]:
    """A plain JSON endpoint: other methods get 405, and a LongPollError raised
    inside becomes its JSON error answer."""

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


def _start(func: Callable[..., Iterable[Any]], signature: inspect.Signature,
           args: tuple[Any, ...], params: dict[str, Any]) -> Any:
    """Call the generator function with the request's own parameters."""
    try:
        signature.bind(*args, **params)
    except TypeError:
        raise _binding_error(signature, args, params) from None
    try:
        return iter(func(*args, **params))
    except LongPollError:
        raise
    except Exception as exc:
        log.exception("starting a session of %s raised", func.__qualname__)
        raise GeneratorFailed(f"starting the session raised {type(exc).__name__}") from None


def _binding_error(signature: inspect.Signature, args: tuple[Any, ...], params: dict[str, Any]) -> LongPollError:
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        for name in params:
            parameter = signature.parameters.get(name)
            if parameter is None or parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                return BadParameter(name, "unknown parameter")
    try:
        bound = signature.bind_partial(*args, **params)
    except TypeError:
        return NotFound("no such resource")  # more path segments than the handler takes
    for name, parameter in signature.parameters.items():
        if (parameter.default is inspect.Parameter.empty and name not in bound.arguments
                and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)):
            return BadParameter(name, "required")
    return NotFound("no such resource")
