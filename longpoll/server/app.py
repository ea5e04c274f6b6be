"""The server ``longpoll serve`` runs: the app tree and CherryPy's settings.

cheroot answers each request on a thread of a fixed pool, and a held poll
keeps its thread until it returns.  So the pool is large (1,000 threads hold
900 polls with a ready poll still answered in milliseconds on a 2-core
machine; see SCALING-FACTS), the hold gate keeps a tenth of it free for polls
that have data, and the listen queue is deep so that bursts of reconnecting
clients wait in the kernel rather than being refused.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cherrypy
import cherrypy.lib.static
import orjson

from ..backends import DEFAULT_RETENTION
from ..broker import DEFAULT_BUFFER, Broker
from ..durable import RedisSessionStore
from ..params import PollLimits
from ..registry import Registry, SessionLimits
from ..responses import JSON_ERRORS
from ..streams import StatusStreams, open_store
from ..streams.hydrators import Hydrators, author_name
from ..webclient import web_dir
from . import cors, openapi
from .demo import Demo
from .service import Service

log = logging.getLogger("longpoll")


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None
    idle_timeout: float = 60.0
    max_sessions: int = 10_000
    max_sessions_per_identifier: int = 20
    max_polls_per_second: float = 50.0
    max_timeout: float = 60.0  # longest a poll may be held (PROTOCOL.md: at most 60)
    threads: int = 1000
    max_held_polls: int | None = None  # default: threads minus a tenth
    max_body_bytes: int = 64 * 1024
    buffer: int = DEFAULT_BUFFER
    retention: int = DEFAULT_RETENTION
    access_log: bool = False
    cors_origins: tuple[str, ...] = ()
    workers: int = 0  # 0: cheroot threads in this process; N: N gunicorn gevent worker processes


def listen_backlog(wanted: int = 4096) -> int:
    """The kernel caps the listen queue at net.core.somaxconn; ask for no more."""
    try:
        return min(wanted, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return wanted


class Root(Service):
    """Everything ``longpoll serve`` answers, under one tree."""

    def __init__(self, openapi: dict[str, Any]):
        self._openapi = orjson.dumps(openapi)

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def openapi_json(self) -> bytes:
        """The OpenAPI document of this server, with its own limits."""
        cherrypy.response.headers["Content-Type"] = "application/json"
        return self._openapi

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def index(self) -> bytes:
        """The demo page."""
        return cherrypy.lib.static.serve_file(str(web_dir() / "index.html"), "text/html")


def build(settings: Settings) -> tuple[Root, dict[str, Any], Broker]:
    """Make the app tree and its config (without touching global CherryPy state)."""
    broker = Broker(settings.redis_url, buffer=settings.buffer, retention=settings.retention)
    store = RedisSessionStore(broker.redis, settings.idle_timeout) if broker.redis is not None else None
    limits = SessionLimits(max_sessions=settings.max_sessions, max_per_owner=settings.max_sessions_per_identifier,
                           polls_per_second=settings.max_polls_per_second,
                           poll_burst=2 * settings.max_polls_per_second)
    registry = Registry(settings.idle_timeout, name="longpoll serve", store=store, limits=limits)
    poll_limits = PollLimits(max_timeout=settings.max_timeout,
                             default_timeout=min(PollLimits.default_timeout, settings.max_timeout))
    root = Root(openapi.document(poll_limits))
    demo = Demo(broker, registry, poll_limits)
    root.primes = demo.primes  # type: ignore[attr-defined]
    root.topics = demo.topics  # type: ignore[attr-defined]
    store = open_store(broker)
    hydrators = Hydrators()
    hydrators.register("name", author_name(store))
    streams = StatusStreams(broker, store, registry, poll_limits, hydrators=hydrators)
    root.users = streams.users  # type: ignore[attr-defined]
    root.statuses = streams.statuses  # type: ignore[attr-defined]
    root.home = streams.home  # type: ignore[attr-defined]
    config = {
        "/": {**JSON_ERRORS, **cors.config(settings.cors_origins), "request.body.maxbytes": settings.max_body_bytes,
              "tools.trailing_slash.on": False},  # POST /users must not be redirected
        "/web": {"tools.staticdir.on": True, "tools.staticdir.dir": str(web_dir())},
    }
    return root, config, broker


def _no_access_log() -> None:
    pass


def configure(settings: Settings) -> None:
    """Set CherryPy's process-wide settings for holding many polls."""
    cherrypy.config.update({
        "server.socket_host": settings.host,
        "server.socket_port": settings.port,
        "server.thread_pool": settings.threads,
        "server.socket_queue_size": listen_backlog(),
        # CherryPy refuses bodies over max_body_bytes with a JSON 413; cheroot's own,
        # plain-text limit stays far above it as a last guard.
        "server.max_request_body_size": max(1 << 20, 4 * settings.max_body_bytes),
        "engine.autoreload.on": False,
        "checker.on": False,
        "log.screen": False,
        "longpoll.max_held_polls": settings.max_held_polls,
        **JSON_ERRORS,
    })
    if settings.access_log:
        vars(cherrypy.log).pop("access", None)
    else:
        # CherryPy formats an access line for every request even when no handler
        # listens: a tenth of the server's time under load (bench.latency --profile).
        cherrypy.log.access = _no_access_log
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("longpoll", "cherrypy.error") + (("cherrypy.access",) if settings.access_log else ()):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def keep_clients_connected(settings: Settings) -> None:
    """Let up to ``max_sessions`` keep-alive connections wait between requests (cheroot: 10).

    Past its limit cheroot answers ``Connection: close``, and a long-poll client,
    which comes straight back, must open a new connection: bench.latency counted
    one on every other poll.  Idle connections still close after
    ``server.socket_timeout``.  Call after the engine has started the server.
    """
    httpserver = cherrypy.server.httpserver
    if httpserver is not None:
        httpserver.keep_alive_conn_limit = settings.max_sessions


def wsgi_application(settings: Settings) -> Any:
    """The app as a WSGI callable for another server (gunicorn's gevent workers).

    CherryPy's own HTTP server stays off; its engine still runs the hub and the
    reaper.  Greenlets cost little, so the hold gate is opened wide.
    """
    if settings.max_held_polls is None:
        settings.max_held_polls = max(settings.max_sessions, 10_000)
    configure(settings)
    cherrypy.server.unsubscribe()
    root, config, _ = build(settings)
    cherrypy.tree.mount(root, "/", config)
    cherrypy.engine.start()
    return cherrypy.tree


def run(settings: Settings) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM stop the engine cleanly)."""
    if settings.workers:
        from .workers import exec_gunicorn

        exec_gunicorn(settings)  # does not return
    configure(settings)
    root, config, broker = build(settings)
    cherrypy.tree.mount(root, "/", config)
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    keep_clients_connected(settings)
    host, port = cherrypy.server.bound_addr[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"longpoll serving on http://{shown}:{port}/ ({broker.backend} backend, "
          f"{settings.threads} threads); Ctrl-C stops", flush=True)
    cherrypy.engine.block()
