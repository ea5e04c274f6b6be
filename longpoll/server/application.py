"""The ASGI application each ``longpoll serve`` worker runs (granian imports it: ``TARGET``).

Settings come from $LONGPOLL_SERVE_SETTINGS (JSON of ``server.Settings``),
which ``longpoll serve`` sets; without it, the defaults, with
$LONGPOLL_REDIS_URL as the backend if set.
"""

from __future__ import annotations

from .app import asgi_application
from .granian import settings_from_env

settings = settings_from_env()
app = asgi_application(settings)
