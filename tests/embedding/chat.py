"""A CherryPy developer's app with live updates added, as the README tells it.

It already has what such apps have: a config file, sessions (CherryPy's
default, implicit locking), a login, an auth tool guarding the API, the
MethodDispatcher for REST resources, and gzip.  longpoll adds one resource
(``/api/chat/stream``) bound to the session's user, the engine plugin, the
browser client's files, and its config keys in the same file.

Run: ``python chat.py chat.conf``.
"""

import sys

import cherrypy

import longpoll
import longpoll.stats

broker = longpoll.Broker()


def require_login() -> None:
    if not cherrypy.session.get("user"):
        raise cherrypy.HTTPError(401, "log in first")


cherrypy.tools.require_login = cherrypy.Tool("before_handler", require_login)


@cherrypy.expose
class Login:
    def POST(self, user: str) -> str:
        cherrypy.session["user"] = user
        return "welcome " + user


@cherrypy.expose
class Say:
    @cherrypy.tools.json_in()
    @cherrypy.tools.json_out()
    def POST(self) -> dict:
        item = {"from": cherrypy.session["user"], "text": cherrypy.request.json["text"]}
        return {"position": broker.publish("chat", item)}


@cherrypy.expose
class Stream:
    @longpoll.json_yield(bind=lambda params: cherrypy.session.get("user"))
    def GET(self):
        with broker.subscribe("chat") as sub:
            while True:
                yield from sub.drain()
                yield sub


@cherrypy.expose
class Page:
    def GET(self) -> str:
        return "hello, " + cherrypy.session.get("user", "stranger")


@cherrypy.expose
class Health:
    @cherrypy.tools.json_out()
    def GET(self) -> dict:
        return {"held_polls": longpoll.stats.snapshot()["held_polls"]}


class Chat:
    pass


class Api:
    pass


class Root:
    pass


root = Root()
root.login = Login()
root.health = Health()
root.api = Api()
root.api.chat = Chat()
root.api.chat.say = Say()
root.api.chat.stream = Stream()
root.api.page = Page()

if __name__ == "__main__":
    longpoll.Plugin(cherrypy.engine).subscribe()
    cherrypy.config.update(sys.argv[1])
    cherrypy.tree.mount(root, "/", sys.argv[1])
    cherrypy.tree.mount(None, "/longpoll", longpoll.web_config())
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    print(f"chat serving on http://127.0.0.1:{cherrypy.server.bound_addr[1]}/ ", flush=True)
    cherrypy.engine.block()
