"""``longpoll serve`` + the bench handlers, as gunicorn's worker loads it.

gunicorn loads this in its worker, after gevent has patched the standard
library; ``longpoll.server.wsgi`` builds the app from ``$LONGPOLL_SERVE_SETTINGS``
exactly as ``longpoll serve --workers N`` does, and the bench handlers are put
on the same root (CherryPy looks handlers up per request), so both run under
the same config.
"""

from __future__ import annotations

import cherrypy

from bench.bare_server import add_handlers
from longpoll.fastpath import FastPolls
from longpoll.server import wsgi

root = cherrypy.tree.apps[""].root
add_handlers(root)
application = wsgi.application
if isinstance(application, FastPolls):  # /ticks continues on the fast path, as longpoll serve's own polls do
    application.route("/ticks", root.ticks)
