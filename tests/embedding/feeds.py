"""The README's app on a Redis broker, as a CherryPy developer runs it in several processes.

Run: ``python feeds.py PORT REDIS_URL [HELD_POLLS]`` on cheroot, or
``PORT=... REDIS_URL=... uvicorn feeds:app --port PORT`` (or granian) through ``longpoll.asgi``.  Every endpoint that
draws from ``broker.feed`` is durable as written: no other setting.
"""

import sys
import uuid

import cherrypy

import longpoll
import longpoll.gate

BOOT = uuid.uuid4().hex  # which process image this is: an autoreload re-executes with the same pid

environ = __import__("os").environ
broker = longpoll.Broker(sys.argv[2] if __name__ == "__main__" else environ["REDIS_URL"])


class Root:
    @cherrypy.expose
    @longpoll.json_yield(idle_timeout=60)
    def news(self):
        return broker.feed("news")

    @cherrypy.expose
    @longpoll.json_yield(idle_timeout=60)
    def room(self, name):
        return (m for m in broker.feed("chat", backfill=5) if m["room"] == name)

    @cherrypy.expose
    def held(self):
        """How many polls wait now, how many files the autoreloader watches, and which process image this is (for
        tests that must know)."""
        watched = len(getattr(cherrypy.engine, "autoreload", None).mtimes)
        return f"{longpoll.gate.HELD.held} {watched} {BOOT} {cherrypy.engine.state.name}"

    @cherrypy.expose
    @cherrypy.tools.json_in()
    @cherrypy.tools.json_out()
    def publish(self, topic="news"):
        return {"position": broker.publish(topic, cherrypy.request.json)}


CONFIG = {"/": {**longpoll.JSON_ERRORS, "longpoll.max_sessions_per_address": 5000}}

if __name__ == "__main__":
    cherrypy.config.update({"server.socket_host": "127.0.0.1", "server.socket_port": int(sys.argv[1]),
                            "engine.autoreload.on": "AUTORELOAD" in environ, "engine.autoreload.frequency": 0.2,
                            "log.screen": "LOG_SCREEN" in environ, "log.error_file": environ.get("ERROR_LOG", "")})
    longpoll.Plugin(cherrypy.engine, held_polls=int(sys.argv[3]) if len(sys.argv) > 3 else 200).subscribe()
    cherrypy.tree.mount(Root(), "/", CONFIG)
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    host, port = cherrypy.server.bound_addr
    print(f"serving on http://{host}:{port}/ (pid {__import__('os').getpid()})", flush=True)
    cherrypy.engine.block()
else:  # imported by an ASGI server (PORT=... uvicorn feeds:app): longpoll.asgi runs the engine with the lifespan
    cherrypy.config.update({"engine.autoreload.on": False, "log.screen": False,
                            "log.error_file": environ.get("ERROR_LOG", ""),
                            "longpoll.max_held_polls": int(environ.get("HELD_POLLS", "200"))})
    cherrypy.tree.mount(Root(), "/", CONFIG)

    async def _started() -> None:
        import asyncio

        while True:  # uvicorn starts the app before it listens: say "serving" once it does
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", int(environ["PORT"]))
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        print(f"serving on http://127.0.0.1:{environ['PORT']}/ (pid {__import__('os').getpid()})", flush=True)

    app = longpoll.asgi(cherrypy.tree, on_started=_started)
