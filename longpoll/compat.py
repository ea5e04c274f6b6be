"""Every reach of the library into a dependency's private parts, in one place, each checked at start-up.

A private attribute or an undocumented behaviour can change in any release
without a word: code that silently did nothing from then on (a hold gate that
sizes for no pool, a CherryPy session that stays locked) is the worst way to
find out.  So each reach is one function here, and :func:`check` (run when
the engine starts, and by ``longpoll.asgi`` when its lifespan starts) fails
the start, naming the dependency, its version and what changed.  The version
caps in ``pyproject.toml`` are those these checks passed on.

- cheroot: a worker thread's ``server.requests._threads``, the pool a held
  poll runs in (``sizing.py`` keeps a reserve of it free);
- CherryPy: ``request._sessionsaved``, which tells ``tools.sessions`` that a
  held poll already saved (and unlocked) its user's session;
- a2wsgi: that it runs each request in a copy of the caller's context, which
  is how the handoff of a poll that must wait reaches the app's thread
  (``waits.Handoff``); checked by running a request through it.

The server product's own reaches (granian's signal handling) are
``longpoll.server.compat``'s.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Any


class Incompatible(RuntimeError):
    """An installed dependency no longer has what longpoll relies on: the message says which, and what to do."""


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def refuse(package: str, what: str) -> Incompatible:
    return Incompatible(f"longpoll relies on {what}, which {package} {_version(package)} does not have; install "
                        f"the {package} version pyproject.toml allows, or a longpoll that supports this one")


# -- cheroot ----------------------------------------------------------------------

def cheroot_pool(thread: threading.Thread) -> int | None:
    """The size of the cheroot pool ``thread`` works in, or None when it is no cheroot worker."""
    server = getattr(thread, "server", None)  # cheroot.workers.threadpool.WorkerThread
    requests = getattr(server, "requests", None)
    threads = getattr(requests, "_threads", None)
    return len(threads) if threads else getattr(requests, "min", None)


def _check_cheroot() -> None:
    from cheroot.workers.threadpool import ThreadPool, WorkerThread

    pool = ThreadPool(None, min=1)
    if not isinstance(getattr(pool, "_threads", None), list) or not hasattr(pool, "min"):
        raise refuse("cheroot", "ThreadPool._threads (the threads a held poll runs in)")
    if "server" not in inspect.signature(WorkerThread.__init__).parameters:
        raise refuse("cheroot", "WorkerThread.server (the server a request's thread belongs to)")


# -- CherryPy ------------------------------------------------------------------------

def session_saved(request: Any) -> None:
    """Tell ``tools.sessions`` that the request's session is saved already (its save at the end is skipped)."""
    request._sessionsaved = True


def _check_cherrypy() -> None:
    from cherrypy.lib import sessions

    if "_sessionsaved" not in inspect.getsource(sessions.save):
        raise refuse("CherryPy", "request._sessionsaved (a session saved once, not again at the end)")


# -- a2wsgi --------------------------------------------------------------------------

async def check_a2wsgi() -> None:
    """Run one request through a2wsgi and see that the app's thread had the caller's context."""
    from a2wsgi import WSGIMiddleware

    probe: contextvars.ContextVar[str] = contextvars.ContextVar("longpoll_compat_probe", default="")
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(probe.get())
        start_response("204 No Content", [])
        return []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    token = probe.set("handed")
    bridge: Any = None
    try:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": [],
                 "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}
        bridge = WSGIMiddleware(app, workers=1)  # type: ignore[arg-type]  # a WSGI app: environ, start_response
        await bridge(scope, receive, send)
    finally:
        probe.reset(token)
        if bridge is not None:
            bridge.executor.shutdown(wait=False)
    if seen != ["handed"]:
        raise refuse("a2wsgi", "a request run in a copy of its caller's context (how a poll's waiting is handed "
                                "to the event loop)")


def check() -> None:
    """Fail now, saying why, if an installed dependency no longer has what longpoll reaches for."""
    _check_cheroot()
    _check_cherrypy()


__all__ = ["Incompatible", "check", "check_a2wsgi", "cheroot_pool", "refuse", "session_saved"]
