"""An app's own ``json_yield`` endpoint, served through ``longpoll.asgi`` on an ASGI server, as an embedder runs it.

Run: ``python -m bench.asgi_app [--server granian|uvicorn] [--port 0]``; it
prints ``asgi app serving on http://HOST:PORT/ (...)`` once it listens.

The app is the README's, written as a CherryPy developer writes it: a
``json_yield`` endpoint drawing from an in-process broker's feed, a publish
handler, mounted with ``cherrypy.tree.mount`` and a ``longpoll.Plugin``;
nothing of ``longpoll serve``'s (no fast routes given: ``longpoll.asgi``
finds the endpoint itself).  One worker process, uvloop, HTTP/1.1.

- ``GET /news?topic=T``: long-polls topic T (``key``/``cursor`` continue);
- ``POST /publish?topic=T``: publishes the JSON body to T (201);
- ``GET /stats``: ``{"held_polls": N}``, the hold gate's count;
- ``GET /healthz``.

Only what a benchmark needs is set beyond the defaults: sessions per client
address (every load generator is one address) and the session cap.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import cherrypy
import orjson

import longpoll
import longpoll.gate

SERVER_ENV = "BENCH_ASGI_SERVER"
PORT_ENV = "BENCH_ASGI_PORT"
HOST = "127.0.0.1"
SESSIONS = 100_000

broker = longpoll.Broker(None)


class Root:
    @cherrypy.expose
    @longpoll.json_yield(idle_timeout=120)
    def news(self, topic: str = "news") -> Any:
        return broker.feed(topic)

    @cherrypy.expose
    @cherrypy.tools.json_in()
    def publish(self, topic: str = "news") -> bytes:
        position = broker.publish(topic, cherrypy.request.json)
        cherrypy.response.status = 201
        cherrypy.response.headers["Content-Type"] = "application/json"
        return orjson.dumps({"topic": topic, "position": position})

    @cherrypy.expose
    def stats(self) -> bytes:
        cherrypy.response.headers["Content-Type"] = "application/json"
        return orjson.dumps({"held_polls": longpoll.gate.HELD.held})

    @cherrypy.expose
    def healthz(self) -> bytes:
        cherrypy.response.headers["Content-Type"] = "application/json"
        return b'{"status":"ok"}'


def application() -> Any:
    cherrypy.config.update({"engine.autoreload.on": False, "checker.on": False, "log.screen": False})
    longpoll.Plugin(cherrypy.engine, held_polls=SESSIONS).subscribe()
    cherrypy.tree.mount(Root(), "/", {"/": {**longpoll.JSON_ERRORS, "longpoll.max_sessions": SESSIONS,
                                            "longpoll.max_sessions_per_address": SESSIONS}})
    server, port = os.environ.get(SERVER_ENV, "granian"), os.environ.get(PORT_ENV, "0")

    async def started() -> None:
        print(f"asgi app serving on http://{HOST}:{port}/ ({server}, 1 worker, uvloop; an app's json_yield "
              "through longpoll.asgi)", flush=True)

    return longpoll.asgi(cherrypy.tree, on_started=started)


if __name__ != "__main__":  # the worker's import (granian or uvicorn): the app
    app = application()


def main() -> int:
    from longpoll.server.granian import free_port
    from longpoll.sizing import listen_backlog

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    port = args.port or free_port(HOST)
    os.environ.update({SERVER_ENV: args.server, PORT_ENV: str(port)})
    target = "bench.asgi_app:app"
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(target, host=HOST, port=port, loop="uvloop", lifespan="on", log_level="warning",
                    backlog=listen_backlog())
        return 0
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes

    Granian(target, address=HOST, port=port, interface=Interfaces.ASGI, workers=1, loop=Loops.uvloop,
            runtime_mode=RuntimeModes.st, http=HTTPModes.http1, backlog=listen_backlog(), backpressure=2 * SESSIONS,
            websockets=False).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
