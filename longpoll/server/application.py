"""The ASGI application each ``longpoll serve`` worker runs (granian imports it: ``TARGET``).

Settings come from $LONGPOLL_SERVE_SETTINGS (JSON of ``server.Settings``),
which ``longpoll serve`` sets; without it, the defaults, with
$LONGPOLL_REDIS_URL as the backend if set.
"""

from __future__ import annotations

import json
import os

from .app import Settings, asgi_application
from .granian import SETTINGS_ENV

_given = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
if "redis_url" not in _given and os.environ.get("LONGPOLL_REDIS_URL"):
    _given["redis_url"] = os.environ["LONGPOLL_REDIS_URL"]
for _name in ("cors_origins", "trusted_proxies"):
    if _name in _given:
        _given[_name] = tuple(_given[_name])
settings = Settings(**_given)
app = asgi_application(settings)
