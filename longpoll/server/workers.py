"""Running ``longpoll serve``: gunicorn with longpoll's gevent worker (``worker.py``).

The command replaces itself with gunicorn, so that gevent patches the standard
library in each fresh worker before CherryPy or redis-py make their locks and
thread-locals (``longpoll.server.wsgi`` builds the app there); settings travel
in the environment.  One worker by default; several (one per core) share
sessions and statuses through Redis.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .worker import SETTINGS_ENV

if TYPE_CHECKING:
    from .app import Settings

WORKER_CONNECTIONS = 100_000  # held polls are greenlets: the session caps bound them, not this
NEEDED = ("gunicorn", "gevent", "packaging")  # gunicorn's gevent worker imports packaging without requiring it


class WorkersUnavailable(SystemExit):
    pass


def gunicorn_argv(settings: Settings) -> list[str]:
    from ..sizing import listen_backlog

    return [sys.executable, "-m", "gunicorn", "--worker-class", "longpoll.server.worker.Worker",
            "--workers", str(settings.workers), "--bind", f"{settings.host}:{settings.port}",
            "--worker-connections", str(WORKER_CONNECTIONS), "--backlog", str(listen_backlog()),
            "--graceful-timeout", "10",
            "--config", str(Path(__file__).with_name("gunicorn_conf.py")),
            *(["--access-logfile", "-"] if settings.access_log else []),
            *(["--no-control-socket"] if _has_setting("control_socket_disable") else []),  # none in ~/.gunicorn
            "longpoll.server.wsgi:application"]


def _has_setting(name: str) -> bool:
    from gunicorn import config

    return any(setting.name == name for setting in config.KNOWN_SETTINGS)


def exec_gunicorn(settings: Settings) -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise WorkersUnavailable(f"longpoll serve needs {' and '.join(missing)}: pip install 'longpoll[server]'")
    if settings.workers > 1 and not settings.redis_url:
        raise WorkersUnavailable("longpoll: --workers above 1 needs --redis: workers share sessions "
                                 "and statuses only through Redis")
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    argv = gunicorn_argv(settings)
    sys.stdout.flush()
    os.execv(argv[0], argv)
