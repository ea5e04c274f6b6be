"""``longpoll serve``'s app tree on plain cheroot threads, as an embedder runs it, plus bench handlers.

It builds ``longpoll serve``'s tree (``build`` from ``longpoll.server.app``
with ``Settings``) on CherryPy's own threaded server, sized by
``longpoll.Plugin`` as the README tells embedders, and adds, on the same
app tree and so under the same config, a trivial exposed handler at
``/bare`` that answers ``{"state": "ready", "items": [1]}`` through
``longpoll.responses.json_body``, as the long-poll endpoints answer, and
``/ticks``, a ``json_yield`` endpoint whose generator is ``itertools.count()``
(an item always ready at no cost: the demo's ``/primes`` would add its
trial divisions to the poll's bill).  Polls of ``/ticks`` and requests of
``/bare`` are then served by one process with the same thread pool, tools and
hooks, so the ratio of their rates is the cost of longpoll's own work per poll.

``bench.latency --keep-alive-conn-limit none`` also runs its threaded rows on
this server, to show what that one cheroot setting changes.

Options are ``longpoll serve``'s, with one default changed for load:
``--max-polls-per-second`` (the per-session cap; a benchmark connection polls
its session hundreds of times a second).  ``--keep-alive-conn-limit`` sets
cheroot's ``keep_alive_conn_limit`` (default: what ``longpoll serve`` sets,
``--max-sessions``; cheroot's own is 10; ``none`` lifts it).

Prints ``bare server serving on http://127.0.0.1:PORT/ ...`` when ready.
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import cherrypy

from longpoll import Plugin, json_yield
from longpoll.responses import JSON_ERRORS, json_body
from longpoll.server.app import Settings, build


@cherrypy.expose
def bare(**params: Any) -> bytes:
    """The baseline: what a poll answers, without sessions, generators or parameter checks."""
    return json_body(200, {"state": "ready", "items": [1]})


def add_handlers(root: Any) -> None:
    """``/bare`` and ``/ticks`` beside ``longpoll serve``'s own endpoints (sharing their session registry)."""
    root.bare = bare
    root.ticks = cherrypy.expose(json_yield(registry=root.primes.registry)(itertools.count))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1000)
    ap.add_argument("--max-sessions", type=int, default=Settings.max_sessions)
    ap.add_argument("--idle-timeout", type=float, default=Settings.idle_timeout)
    ap.add_argument("--max-timeout", type=float, default=Settings.max_timeout)
    ap.add_argument("--redis", metavar="URL", default=None, help="Redis URL (default: the embedded backend)")
    ap.add_argument("--max-polls-per-second", type=float, default=1_000_000.0)
    ap.add_argument("--keep-alive-conn-limit", default="default",
                    help="cheroot's keep_alive_conn_limit: default (as longpoll serve: --max-sessions), N, "
                         "or none")
    args = ap.parse_args()
    settings = Settings(host=args.host, port=args.port, max_sessions=args.max_sessions, max_sessions_per_address=10**6,
                        idle_timeout=args.idle_timeout, max_timeout=args.max_timeout, redis_url=args.redis,
                        max_polls_per_second=args.max_polls_per_second)
    cherrypy.config.update({"server.socket_host": args.host, "server.socket_port": args.port,
                            "engine.autoreload.on": False, "checker.on": False, "log.screen": False, **JSON_ERRORS})
    cherrypy.log.access = lambda: None  # as longpoll serve: no access-line formatting per request
    Plugin(cherrypy.engine, held_polls=args.threads - max(2, args.threads // 10)).subscribe()
    root, config, broker = build(settings)
    add_handlers(root)
    cherrypy.tree.mount(root, "/", config)
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    httpserver = cherrypy.server.httpserver
    if args.keep_alive_conn_limit != "default":
        httpserver.keep_alive_conn_limit = None if args.keep_alive_conn_limit == "none" else int(
            args.keep_alive_conn_limit)
    host, port = cherrypy.server.bound_addr[:2]
    backend = "redis" if args.redis else "memory"
    print(f"bare server serving on http://{host}:{port}/ ({backend} backend, {args.threads} threads, "
          f"keep_alive_conn_limit {httpserver.keep_alive_conn_limit}); /bare is the bare handler", flush=True)
    cherrypy.engine.block()


if __name__ == "__main__":
    main()
