"""gunicorn hooks for ``longpoll serve --workers N`` (see workers.py)."""

from __future__ import annotations

import json
import os


def when_ready(server) -> None:  # type: ignore[no-untyped-def]
    """Print the address the way the threaded server does (tests and people read it)."""
    settings = json.loads(os.environ.get("LONGPOLL_SERVE_SETTINGS") or "{}")
    backend = "redis" if settings.get("redis_url") else "memory"
    address = str(server.LISTENERS[0]).replace("0.0.0.0", "127.0.0.1")
    print(f"longpoll serving on {address}/ ({backend} backend, {server.num_workers} gevent workers); "
          "Ctrl-C stops", flush=True)


def worker_exit(server, worker) -> None:  # type: ignore[no-untyped-def]
    """Close every session (their generators' finally blocks run) and stop the hub."""
    import cherrypy

    cherrypy.engine.exit()
