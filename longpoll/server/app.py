"""The server ``longpoll serve`` runs: the app tree, CherryPy's settings, and its ASGI front.

The app is CherryPy's, as an embedder's would be, served through
``longpoll.asgi`` by granian (``granian.py``): a held poll costs a future on
the worker's event loop, not a thread, and the polls that continue a session
(nearly all of them) are answered there without CherryPy's per-request
machinery.
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Any

import cherrypy
import cherrypy.lib.static
import orjson
from cherrypy import _cprequest

from ..asgi_front import asgi
from ..broker import Broker
from ..params import PollLimits
from ..plugin import Plugin
from ..registry import Registry, SessionLimits
from ..responses import JSON_ERRORS, json_error_page
from ..routes import Routes
from ..webclient import web_dir
from . import cors, openapi
from .demo import Demo
from .service import Service
from .settings import Settings
from .streams import StatusStreams, open_store
from .streams.hydrators import Hydrators, author_name

log = logging.getLogger("longpoll")

DEMO_PAGE = Path(__file__).resolve().parent / "demo_page"
"""The demo page at / and its files at /web/demo/ (package data of the product; the client is at /web/)."""


class Root(Service):
    """Everything ``longpoll serve`` answers, under one tree: the demo's ``/primes`` and ``/topics``, and the
    status streams' ``/users``, ``/statuses`` and ``/home``."""

    def __init__(self, openapi: dict[str, Any], demo: Demo, streams: StatusStreams):
        self._openapi = orjson.dumps(openapi)
        self.primes = demo.primes
        self.topics = demo.topics
        self.users = streams.users
        self.statuses = streams.statuses
        self.home = streams.home
        # The long-polls answered on the fast path: (path, handler, whether the path is a prefix).
        self.fast_routes = [("/statuses/sample.json", streams.statuses.sample_json, False),
                             ("/statuses/filter.json", streams.statuses.filter_json, False),
                             ("/primes", demo.primes, False),
                             ("/topics/", demo.follow, True)]
        # What the front answers itself that is not a poll: (path, handler, whether the path is a prefix).
        self.fast_handlers = [("/topics/", demo.publish, True), ("/statuses", streams.statuses.post, False)]

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
        return cherrypy.lib.static.serve_file(str(DEMO_PAGE / "index.html"), "text/html")


def build(settings: Settings) -> tuple[Root, dict[str, Any], Broker]:
    """Make the app tree and its config (without touching global CherryPy state)."""
    broker = Broker(settings.redis_url, prefix=settings.prefix, buffer=settings.buffer, retention=settings.retention,
                    log_retention=settings.retention)
    limits = SessionLimits(max_sessions=settings.max_sessions, max_per_owner=settings.max_sessions_per_identifier,
                           max_per_address=settings.max_sessions_per_address,
                           polls_per_second=settings.max_polls_per_second,
                           poll_burst=max(1.0, 2 * settings.max_polls_per_second))  # under one poll: none pass
    registry = Registry(settings.idle_timeout, name="longpoll serve", session_limits=limits)
    poll_limits = PollLimits(max_timeout=settings.max_timeout,
                             default_timeout=min(PollLimits.default_timeout, settings.max_timeout),
                             max_stream_seconds=settings.max_stream_seconds, heartbeat=settings.heartbeat)
    # Anyone may publish to the demo's topics: a log of their own, bounded in bytes, not the statuses'.
    topics = Broker(settings.redis_url, prefix=settings.prefix, name="topics", buffer=settings.buffer,
                    retention=settings.topic_history, log_retention=settings.topic_retention,
                    topic_ttl=settings.topic_ttl, max_item_bytes=settings.max_topic_item_bytes,
                    idempotency_window=settings.idempotency_window,
                    idempotency_keys=settings.topic_retention)  # as many keys as items: a key per item kept
    demo = Demo(topics, registry, poll_limits)
    store = open_store(broker)
    hydrators = Hydrators()
    hydrators.register("name", author_name(store))
    streams = StatusStreams(broker, store, registry, poll_limits, hydrators=hydrators)
    root = Root(openapi.document(poll_limits), demo, streams)
    config = {
        "/": {**JSON_ERRORS, **cors.config(settings.cors_origins), "request.body.maxbytes": settings.max_body_bytes,
              "tools.trailing_slash.on": False},  # POST /users must not be redirected
        "/web": {"tools.staticdir.on": True, "tools.staticdir.dir": str(web_dir())},
        "/web/demo": {"tools.staticdir.on": True, "tools.staticdir.dir": str(DEMO_PAGE)},
    }
    return root, config, broker


def _no_access_log() -> None:
    pass


def configure(settings: Settings) -> None:
    """Set CherryPy's process-wide settings (CherryPy's own HTTP server stays off: granian serves)."""
    cherrypy.config.update({
        "engine.autoreload.on": False,
        "checker.on": False,
        "log.screen": False,
        "longpoll.max_held_polls": settings.max_held_polls or settings.max_sessions,
        "longpoll.max_stream_bytes": settings.max_stream_bytes,
        "longpoll.trusted_proxies": tuple(settings.trusted_proxies),
        "longpoll.route": settings.route,
        **JSON_ERRORS,
    })
    cherrypy.server.unsubscribe()
    answer_json_before_any_app()
    # granian writes the access log (--access-log), one line for every request, whoever answers it (most are
    # answered on the event loop, without CherryPy); CherryPy would format a second line for the rest, and
    # formats one even when no handler listens: a tenth of the server's time under load (bench.latency).
    cherrypy.log.access = _no_access_log
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("longpoll", "cherrypy.error"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


GC_THRESHOLDS = (50_000, 50, 100)
"""The collector's thresholds in ``longpoll serve``: at Python's (700, 10, 10), a publish releasing ten
thousand held polls ran a full collection over every session's objects several times (bench.broadcast,
half of a Redis release's time); nearly all of a poll's objects are freed by their reference counts."""


def collect_less() -> None:
    """Fewer, later garbage collections for a process that holds many long-lived sessions; what the app's
    import made is frozen out of them.  The server product's own choice: an embedding app tunes its process."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def answer_json_before_any_app() -> None:
    """What CherryPy answers before it has looked up an app's config (a request without a valid Host, a path no
    app is mounted at) comes from ``Request``'s class defaults: JSON too, never a traceback.  This changes them
    for the whole process, which is the server product's own: an embedding app uses ``JSON_ERRORS`` in its
    config instead."""
    _cprequest.Request.error_page = {"default": json_error_page}
    _cprequest.Request.show_tracebacks = False


def asgi_application(settings: Settings, build_tree: Any = None) -> Any:
    """The whole server as an ASGI application (``longpoll.asgi``): the engine (hubs, expiry) runs with its
    lifespan; polls that continue a session are answered on the event loop, and every wait is held there.

    ``build_tree(settings)`` makes the tree (default :func:`build`; the
    benchmarks add handlers of their own).
    """
    configure(settings)
    collect_less()
    Plugin(cherrypy.engine, held_polls=settings.max_held_polls or settings.max_sessions).subscribe()
    root, config, _ = (build_tree or build)(settings)
    cherrypy.tree.mount(root, "/", config)
    routes = Routes()
    if settings.fastpath:
        for path, handler, prefix in root.fast_routes:  # the product's functions read only their parameters
            routes.route(path, handler, prefix=prefix, first_polls=True)
        for path, publish, prefix in root.fast_handlers:
            routes.handle(path, publish, prefix=prefix)
    from .granian import announce

    async def started() -> None:
        announce(settings.host, settings.port, banner(settings))

    return asgi(cherrypy.tree, max_body_bytes=settings.max_body_bytes, headers=cors.asgi_headers(settings.cors_origins),
                routes=routes, read_timeout=settings.read_timeout, on_started=started)


def banner(settings: Settings) -> str:
    """What the server says once it serves (tests and people read it: "serving on <url>")."""
    backend = "redis" if settings.redis_url else "memory"
    front = "polls answered on the event loop" if settings.fastpath else "every poll through CherryPy"
    workers = f"{settings.workers} worker{'s' if settings.workers != 1 else ''}"
    return (f"longpoll serving on http://{settings.host}:{settings.port}/ ({backend} backend; granian, {workers}; "
            f"{front}); Ctrl-C stops")


def run(settings: Settings) -> None:
    """Serve until interrupted: granian, one process per worker, each serving the ASGI application."""
    from .granian import serve

    serve(settings)
