"""The README's app on a Redis broker, as a CherryPy developer runs it in several processes.

Run: ``python feeds.py PORT REDIS_URL``.  Every endpoint that draws from
``broker.feed`` is durable as written: no other setting.
"""

import sys

import cherrypy

import longpoll

broker = longpoll.Broker(sys.argv[2])


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
    @cherrypy.tools.json_in()
    @cherrypy.tools.json_out()
    def publish(self, topic="news"):
        return {"position": broker.publish(topic, cherrypy.request.json)}


if __name__ == "__main__":
    cherrypy.config.update({"server.socket_host": "127.0.0.1", "server.socket_port": int(sys.argv[1]),
                            "engine.autoreload.on": False, "log.screen": False})
    longpoll.Plugin(cherrypy.engine, held_polls=200).subscribe()
    cherrypy.tree.mount(Root(), "/", {"/": longpoll.JSON_ERRORS})
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    host, port = cherrypy.server.bound_addr
    print(f"serving on http://{host}:{port}/ (pid {__import__('os').getpid()})", flush=True)
    cherrypy.engine.block()
