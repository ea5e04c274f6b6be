"""``longpoll serve``'s ASGI application plus the bench handlers, as granian loads it in a worker.

``longpoll.server.application`` builds the app from ``$LONGPOLL_SERVE_SETTINGS``
exactly as ``longpoll serve`` does; this does the same with ``bench.bare_server
.add_handlers`` put on the same tree (so ``/ticks`` and ``/bare`` run under the
same config), and answers ``/ticks`` continuations on the event loop as
``longpoll serve`` answers its own polls.
"""

from __future__ import annotations

from typing import Any

from bench.bare_server import add_handlers
from longpoll.server.app import Settings, asgi_application, build
from longpoll.server.granian import settings_from_env

settings = settings_from_env()
_roots: list[Any] = []


def _build_with_bench_handlers(given: Settings) -> tuple[Any, dict[str, Any], Any]:
    root, config, broker = build(given)
    add_handlers(root)
    _roots.append(root)
    return root, config, broker


app = asgi_application(settings, _build_with_bench_handlers)
if settings.fastpath and app.routes is not None:
    app.routes.route("/ticks", _roots[0].ticks)
