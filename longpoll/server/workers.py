"""``longpoll serve --workers N``: gunicorn with gevent workers, for many held polls.

A held poll under cheroot costs a thread, and past about 1,500 threads the
pool itself slows down.  Under gevent a held poll costs a greenlet: one worker
process holds 10,000 polls and still answers a ready poll in milliseconds
(SCALING-FACTS, bench/).  Several workers (or machines) share one Redis.

The command replaces itself with gunicorn, so that gevent patches the standard
library in each fresh worker before longpoll, CherryPy or redis-py is imported
(``longpoll.server.wsgi`` builds the app there); settings travel in the environment.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import Settings

SETTINGS_ENV = "LONGPOLL_SERVE_SETTINGS"
WORKER_CONNECTIONS = 20_000
KEEPALIVE = 75  # clients poll again at once: keep their connection


class WorkersUnavailable(SystemExit):
    pass


def gunicorn_argv(settings: Settings) -> list[str]:
    from ..sizing import listen_backlog

    return [sys.executable, "-m", "gunicorn", "--worker-class", "gevent",
            "--workers", str(settings.workers), "--bind", f"{settings.host}:{settings.port}",
            "--worker-connections", str(WORKER_CONNECTIONS), "--backlog", str(listen_backlog()),
            "--keep-alive", str(KEEPALIVE), "--graceful-timeout", "10",
            # by file: importing the longpoll package in the arbiter would import
            # CherryPy before gevent patches threading.local in the workers
            "--config", str(Path(__file__).with_name("gunicorn_conf.py")),
            *(["--access-logfile", "-"] if settings.access_log else []),
            "longpoll.server.wsgi:application"]


def exec_gunicorn(settings: Settings) -> None:
    missing = [name for name in ("gunicorn", "gevent") if importlib.util.find_spec(name) is None]
    if missing:
        raise WorkersUnavailable(f"longpoll: --workers needs {' and '.join(missing)}: "
                                 "pip install 'longpoll[gevent]'")
    if settings.workers > 1 and not settings.redis_url:
        raise WorkersUnavailable("longpoll: --workers above 1 needs --redis: workers share sessions "
                                 "and statuses only through Redis")
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    argv = gunicorn_argv(settings)
    sys.stdout.flush()
    os.execv(argv[0], argv)
