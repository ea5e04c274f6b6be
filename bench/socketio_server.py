"""python-socketio on uvicorn, its clients on Engine.IO long-polling: a row of ``bench.broadcast``.

Run: ``python -m bench.socketio_server [--port 0]``; it prints ``socketio
serving on http://HOST:PORT/ (...)`` once it listens.  One process, uvloop
(and httptools when installed, as ``uvicorn[standard]`` has it).

- ``/socket.io/?EIO=4&transport=polling``: Engine.IO v4.  A client makes its
  session with a GET (``0{"sid":...}``), connects to the namespace with a
  POST of ``40{"topic":"T"}`` (the server puts it in room T), reads the
  connect's answer with a GET, and then each held GET waits for the next
  packets;
- ``POST /publish?topic=T``: ``emit("news", body, room=T)``, then 201;
- ``GET /stats``: ``{"held_polls": N}``, the GETs waiting for packets;
- ``GET /healthz``.

Pings come every 100 s (Engine.IO's default is 25 s): the benchmark's
clients never answer one, and a run holds its polls for less than that.

Optional: ``pip install python-socketio uvicorn`` (not a dependency of
longpoll); without them ``bench.broadcast`` prints that and skips the row.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import urllib.parse
from importlib.metadata import version
from typing import Any

import orjson

NEEDED = ("socketio", "uvicorn")
HOST = "127.0.0.1"
PING_INTERVAL = 100


def missing() -> str | None:
    """What is not installed, as the line a benchmark prints when it skips the row; None if nothing."""
    absent = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if absent:
        return f"{' and '.join(absent)} not installed: pip install python-socketio uvicorn"
    return None


def application() -> Any:
    import engineio.async_socket
    import socketio

    held = [0]
    poll = engineio.async_socket.AsyncSocket.poll

    async def counted_poll(self: Any) -> Any:
        held[0] += 1
        try:
            return await poll(self)
        finally:
            held[0] -= 1

    engineio.async_socket.AsyncSocket.poll = counted_poll  # type: ignore[method-assign]
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=PING_INTERVAL, ping_timeout=20,
                               allow_upgrades=False, transports=["polling"])

    @sio.event
    async def connect(sid: str, environ: dict, auth: Any) -> None:
        await sio.enter_room(sid, (auth or {}).get("topic", "news"))

    async def other(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        status, body = 404, b'{"error":"not found"}'
        if scope["path"] == "/stats":
            status, body = 200, orjson.dumps({"held_polls": held[0]})
        elif scope["path"] == "/healthz":
            status, body = 200, b'{"status":"ok"}'
        elif scope["path"] == "/publish" and scope["method"] == "POST":
            raw = b""
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            topic = urllib.parse.parse_qs(scope["query_string"].decode()).get("topic", ["news"])[0]
            await sio.emit("news", orjson.loads(raw), room=topic)
            status, body = 201, b'{"published":true}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return socketio.ASGIApp(sio, other_asgi_app=other)


def main() -> int:
    import uvicorn

    from longpoll.server.granian import free_port
    from longpoll.sizing import listen_backlog

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    port = args.port or free_port(HOST)
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    config = uvicorn.Config(application(), host=HOST, port=port, loop="uvloop", http=http, lifespan="off",
                            log_level="warning", backlog=listen_backlog(), timeout_keep_alive=120)
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            print(f"socketio serving on http://{HOST}:{port}/ (python-socketio {version('python-socketio')}, "
                  f"uvicorn {version('uvicorn')}, {http}, uvloop, 1 process; Engine.IO long-polling)", flush=True)
        await task

    import uvloop

    uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
