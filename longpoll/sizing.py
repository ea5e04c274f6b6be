"""How many polls may wait at once, read off the server that is actually running.

A held poll costs a thread under a threaded WSGI server (cheroot, gunicorn,
waitress, uWSGI, mod_wsgi) and a future on an event loop.  With threads, if
every one of them waits, nothing is left to answer a poll that has data or
any other page and the server freezes (cheroot's default pool of 10 does so
with 10 held polls), so the hold gate keeps a tenth of the threads free.
With futures the only bound is memory, so the gate is wide.

The server is found from the request being answered (a cheroot worker
thread knows its pool; ``capacity.py`` reads the others), so the same code
sizes itself under ``cherrypy.quickstart``, a standalone
``cheroot.wsgi.Server``, gunicorn, waitress, ``longpoll.asgi`` or
``longpoll serve``, without the app saying which."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import cherrypy

from . import capacity, compat, waits

log = logging.getLogger("longpoll")

HELD_POLLS = 1000
"""What ``longpoll.Plugin`` sizes CherryPy's own server for unless told otherwise."""

LOOP_HELD = 100_000
"""The gate on an event loop: a held poll is a future; sessions and memory are the limits."""

LISTEN_QUEUE = 4096


def reserve(pool: int) -> int:
    """Threads kept free for polls that have data: a tenth, at least 2."""
    return max(2, pool // 10)


def pool_for(held_polls: int) -> int:
    """The smallest pool whose hold gate lets ``held_polls`` wait, its reserve kept free."""
    pool = held_polls + reserve(held_polls)
    while pool - reserve(pool) < held_polls:
        pool += 1
    return pool


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Budget(NamedTuple):
    """How many polls may wait at once here, and what said so (for the log line when polls are turned away)."""

    held: int
    source: str


_serving = threading.local()


def serving(environ: Mapping[str, Any]) -> None:
    """Say which WSGI request this thread answers, for a front that answers without CherryPy's request
    (``FastPolls``): the hold gate reads its server from it."""
    _serving.environ = environ


def held_limit() -> int:
    """Polls this process may hold now, from config or from the running server."""
    return hold_budget().held


def hold_budget() -> Budget:
    """Polls this process may hold now: ``longpoll.max_held_polls`` if the config says, else what the server
    answering this poll can hold while a reserve of its slots stays free for other requests."""
    configured = cherrypy.config.get("longpoll.max_held_polls")
    if configured is not None:
        return Budget(int(configured), "longpoll.max_held_polls")
    if on_event_loop() or waits.HANDOFF.get() is not None:  # a poll begun on longpoll.asgi's threads waits on its
        return ON_A_LOOP  # loop: the gate is asked on the thread, before the steps are handed over
    pool = compat.cheroot_pool(threading.current_thread())
    if pool is not None:
        return _budget(capacity.Server("cheroot", pool, "server.thread_pool, longpoll.Plugin(held_polls=)"))
    environ = _environ()
    server = capacity.wsgi(environ) or capacity.command_line()
    if server is None and environ is not None:
        server = capacity.unknown(environ)
    if server is not None and server.slots is not None and server.per == "thread":
        return _budget(server)
    pool = int(getattr(cherrypy.server, "thread_pool", 10) or 10)  # no server answers: a test, in this process
    return Budget(max(1, pool - reserve(pool)), "cherrypy.server.thread_pool (no server answers this poll)")


ON_A_LOOP = Budget(LOOP_HELD, "an event loop, where a held poll is a future")


@functools.lru_cache(maxsize=64)
def _budget(server: capacity.Server) -> Budget:
    if server.slots is None or server.per != "thread":
        return ON_A_LOOP
    held = max(0, server.slots - reserve(server.slots))
    return Budget(held, f"{server}, {server.slots - held} of them kept for other requests")


def _environ() -> Mapping[str, Any] | None:
    request = getattr(cherrypy.serving, "request", None)
    environ = getattr(request, "wsgi_environ", None)  # CherryPy's own request (None outside one)
    return environ if environ else getattr(_serving, "environ", None)


def listen_backlog(wanted: int = LISTEN_QUEUE) -> int:
    """The kernel caps the listen queue at net.core.somaxconn; ask for no more."""
    try:
        return min(wanted, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return wanted


def tune_cherrypy_server(held_polls: int) -> None:
    """Before ``cherrypy.server`` starts: enough threads to hold ``held_polls`` with a reserve, and a deep
    listen queue so bursts of reconnecting clients wait in the kernel instead of being refused."""
    server = cherrypy.server
    wanted = pool_for(held_polls)
    if (server.thread_pool or 0) < wanted:
        server.thread_pool = wanted
    server.socket_queue_size = max(server.socket_queue_size or 0, listen_backlog())


def keep_clients_connected(httpserver: Any, held_polls: int) -> None:
    """Let as many keep-alive connections wait between requests as polls are held (cheroot: 10).

    Past its limit cheroot answers ``Connection: close``, and a long-poll
    client, which comes straight back, must open a new connection.  Idle
    connections still close after the server's socket timeout.
    """
    if httpserver is not None and getattr(httpserver, "keep_alive_conn_limit", None) is not None:
        httpserver.keep_alive_conn_limit = max(httpserver.keep_alive_conn_limit, held_polls)


def tune_cheroot(httpserver: Any, held_polls: int = HELD_POLLS) -> None:
    """The same sizing for a standalone ``cheroot.wsgi.Server``, before its ``start()``."""
    wanted = pool_for(held_polls)
    if httpserver.requests.min < wanted:
        httpserver.requests.min = wanted
    httpserver.request_queue_size = max(httpserver.request_queue_size, listen_backlog())
    keep_clients_connected(httpserver, held_polls)


def check_server(held_polls: int) -> capacity.Server | None:
    """At engine start: warn when the server this process runs under (as far as it can be read before its
    first request) cannot hold the polls the app means to, naming the server's setting.  A poll past a
    server's limit waits in its queue, where no publish reaches it; the log says so now, not when clients
    find their polls answered late, or at once with ``retry_ms``."""
    server = capacity.wsgi(None) or capacity.command_line()
    if server is None or server.slots is None:
        return server
    configured = cherrypy.config.get("longpoll.max_held_polls")
    wanted = int(configured) if configured is not None else held_polls
    asked = "longpoll.max_held_polls" if configured is not None else "longpoll.Plugin(held_polls=)"
    if server.per == "connection":
        if server.slots < wanted:
            log.warning("longpoll: %s, fewer than the %d polls this process is to hold (%s): a poll on a "
                        "further connection waits, unanswered, until another closes; raise %s", server, wanted,
                        asked, server.setting.split(",")[0])
        return server
    room = _budget(server).held
    if configured is not None and wanted > room:
        log.warning("longpoll: %s, and longpoll.max_held_polls = %d: polls held past %d take the threads the "
                    "app's other requests need; give it more threads (%s), or lower longpoll.max_held_polls",
                    server, wanted, room, server.setting)
    elif configured is None and room < wanted:
        log.warning("longpoll: %s: this process holds at most %d polls at once, keeping the rest for the app's "
                    "other requests, fewer than the %d %s asks for; polls past that answer at once with retry_ms. "
                    "More threads (%s) hold more; longpoll.max_held_polls sets the number (and silences this)",
                    server, room, wanted, asked, server.setting)
    return server
