"""How many polls may wait at once, read off the server that is actually running.

A held poll costs a thread under cheroot and a future on an event loop.  With
threads, if every one of them waits, nothing is left to answer a poll that
has data and the server freezes (cheroot's default pool of 10 does so with
10 held polls), so the hold gate keeps a tenth of the pool free.  With
futures the only bound is memory, so the gate is wide.

The pool is found from the thread answering the request (a cheroot worker
thread knows its server), so the same code sizes itself correctly under
``cherrypy.quickstart``, a standalone ``cheroot.wsgi.Server``,
``longpoll.asgi`` or ``longpoll serve``, without the app saying which.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import cherrypy

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


def held_limit() -> int:
    """Polls this process may hold now, from config or from the running server."""
    configured = cherrypy.config.get("longpoll.max_held_polls")
    if configured is not None:
        return int(configured)
    if on_event_loop():
        return LOOP_HELD
    pool = _cheroot_pool(threading.current_thread())
    if pool is None:
        pool = int(getattr(cherrypy.server, "thread_pool", 10) or 10)
    return max(1, pool - reserve(pool))


def _cheroot_pool(thread: threading.Thread) -> int | None:
    server = getattr(thread, "server", None)  # cheroot.workers.threadpool.WorkerThread
    requests = getattr(server, "requests", None)
    threads = getattr(requests, "_threads", None)
    return len(threads) if threads else getattr(requests, "min", None)


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
