"""``bench.overhead``'s server under gunicorn's gevent worker: ``longpoll serve --workers 1`` + bench handlers.

gunicorn loads this in its worker, after gevent has patched the standard
library; ``longpoll.server.wsgi`` builds the app from ``$LONGPOLL_SERVE_SETTINGS``
exactly as ``longpoll serve --workers N`` does, and the bench handlers are put
on the same root (CherryPy looks handlers up per request), so both run under
the same config.
"""

from __future__ import annotations

import cherrypy

from bench.bare_server import add_handlers
from longpoll.server import wsgi

add_handlers(cherrypy.tree.apps[""].root)
application = wsgi.application
