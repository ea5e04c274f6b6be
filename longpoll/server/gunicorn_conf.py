"""gunicorn hooks for ``longpoll serve`` (see workers.py)."""

from __future__ import annotations

import json
import os


def when_ready(server) -> None:  # type: ignore[no-untyped-def]
    """Say where, and which configuration runs (tests and people read it)."""
    settings = json.loads(os.environ.get("LONGPOLL_SERVE_SETTINGS") or "{}")
    backend = "redis" if settings.get("redis_url") else "memory"
    address = str(server.LISTENERS[0]).replace("0.0.0.0", "127.0.0.1")
    workers = server.num_workers
    front = "fast path for continuation polls" if settings.get("fastpath", True) else "no fast path"
    print(f"longpoll serving on {address}/ ({backend} backend; gunicorn, {workers} gevent pywsgi "
          f"worker{'s' if workers != 1 else ''}; {front}); Ctrl-C stops", flush=True)


def worker_exit(server, worker) -> None:  # type: ignore[no-untyped-def]
    """Close every session (their generators' finally blocks run) and stop the hub."""
    import cherrypy

    cherrypy.engine.exit()
