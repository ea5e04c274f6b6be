"""Running ``longpoll serve``: granian, one process per worker, each serving the ASGI application.

granian (Rust: tokio and hyper) parses HTTP and holds the connections; each
worker runs one Python event loop, on which held polls are futures
(``longpoll.asgi``).  What the options become:

- ``--read-timeout``: granian's deadline for a request's whole head, which is
  also how long an idle kept-alive connection waits (granian has one setting
  for both); a body gets as long again, on the app's side (408);
- ``--max-connections``: granian's *backpressure*, the connections a worker
  holds open (held polls, streams and idle keep-alives count); past it, new
  connections wait in the kernel's listen queue.  It must be well above the
  polls a worker holds, or a client that opens connections and sends nothing
  keeps everyone else waiting;
- ``--workers``: processes sharing the port (SO_REUSEPORT); above 1 they share
  sessions and statuses through Redis.

granian answers some malformed requests itself, before the app sees them
(a request line it cannot parse: 400; a target over 64 KiB: 414; headers past
its buffer or 100 of them: 431) with an empty body: hyper, underneath, has no
hook for their body, so these are the only answers of ``longpoll serve`` that
are not JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import socket
import sys

from ..sizing import listen_backlog
from . import compat
from .settings import Settings

SETTINGS_ENV = "LONGPOLL_SERVE_SETTINGS"
TARGET = "longpoll.server.application:app"
NEEDED = ("granian", "a2wsgi")
HEAD_BUFFER = 128 * 1024
"""The largest request head granian reads (its default is 408 KiB): a stream's filter in a 64 KiB query fits."""

KILL_AFTER = 30
"""Seconds a worker may take to stop before granian kills it (held polls answer at the signal: seconds)."""


class ServerUnavailable(SystemExit):
    pass


def serve(settings: Settings) -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ServerUnavailable(f"longpoll serve needs {' and '.join(missing)}: pip install 'longpoll[server]'")
    if settings.workers > 1 and not settings.redis_url:
        raise ServerUnavailable("longpoll: --workers above 1 needs --redis: workers share sessions "
                                "and statuses only through Redis")
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
    from granian.http import HTTP1Settings

    compat.check()
    compat.stop_once()
    compat.stops_reach_workers_first()
    if settings.port == 0:  # granian would say it listens on port 0: choose one, and say it
        settings = dataclasses.replace(settings, port=free_port(settings.host))
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    sys.stdout.flush()
    Granian(TARGET, address=settings.host, port=settings.port, interface=Interfaces.ASGI, workers=settings.workers,
            loop=Loops.uvloop if importlib.util.find_spec("uvloop") else Loops.asyncio,
            runtime_mode=RuntimeModes.st,  # the multi-threaded runtime panicked at exit (granian #799, #884)
            http=HTTPModes.http1, backlog=listen_backlog(), backpressure=settings.max_connections,
            http1_settings=HTTP1Settings(header_read_timeout=int(min(settings.read_timeout, 60) * 1000),
                                         max_buffer_size=HEAD_BUFFER),
            websockets=False, log_access=settings.access_log, respawn_failed_workers=True,
            workers_kill_timeout=KILL_AFTER).serve()


def settings_from_env() -> Settings:
    """What :func:`serve` handed its workers (each is a fresh import of the target); without it, the
    defaults, with $LONGPOLL_REDIS_URL as the backend if set."""
    given = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
    if "redis_url" not in given and os.environ.get("LONGPOLL_REDIS_URL"):
        given["redis_url"] = os.environ["LONGPOLL_REDIS_URL"]
    for name in ("cors_origins", "trusted_proxies"):
        if name in given:
            given[name] = tuple(given[name])
    return Settings(**given)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def announce(host: str, port: int, banner: str) -> None:
    """Once a worker accepts connections, say so (the launcher's line, which people and tests read)."""

    async def when_listening() -> None:
        for _ in range(1000):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1" if host in ("0.0.0.0", "::") else host, port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.01)
        print(banner, flush=True)

    asyncio.ensure_future(when_listening())
