"""Which HTTP server runs this process, and how many requests (or connections) it takes at once.

Under a threaded WSGI server a held poll keeps one of its threads, so the
hold gate (``gate.py``) must leave some of them for the app's other
requests: a request past the server's threads waits in its queue, where no
publish reaches it and its session may expire before it runs.  An ASGI
server's limit is on connections instead (granian's ``--backpressure`` is a
permit per accepted connection, kept while it stays open; uvicorn's
``--limit-concurrency`` counts connections too): a kept-alive connection
holds its place whether its poll waits or not, so no gate helps there, and
the app can only say at start that the server's limit is below what it is to
hold (``sizing.check_server``).

Each server is read from what it itself exposes, never guessed from its
defaults alone:

- gunicorn: its worker, whose signal handlers are its own bound methods
  (``signal.getsignal``), carries its config (``cfg.threads``,
  ``worker_class``); the sync worker runs one request at a time;
- waitress: the request's channel (``environ['waitress.client_disconnected']``
  is its bound method) knows its server's ``adj.threads``; without the
  request, the task threads it names ``waitress-N``;
- mod_wsgi and uWSGI: the modules they put in the process
  (``mod_wsgi.threads_per_process``, ``uwsgi.cores``);
- granian and uvicorn started from their command line: the command line
  itself, read with the server's own parser (``sys.argv`` is the main
  process's in every worker, forked or spawned), so its environment
  variables and defaults count as they do for the server.

cheroot's pool is read from its worker thread in ``sizing.py``.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNKNOWN_THREADS = 4
"""Requests a threaded WSGI server this module cannot read is taken to run at once (waitress's default, the
smallest of the common servers'): too few held polls costs clients a retry, too many freezes the app."""


@dataclass(frozen=True)
class Server:
    """What runs the app's requests, as the hold gate needs to know it.

    ``slots`` is how many requests one process runs at once (``per="thread"``), or how many connections
    it keeps open (``per="connection"``); None: no bound.  ``setting`` is the server's own option that
    changes it.
    """

    name: str
    slots: int | None
    setting: str
    per: str = "thread"

    def __str__(self) -> str:
        if self.slots is None:
            return self.name
        what = ("request" if self.slots == 1 else "requests") + " at once" if self.per == "thread" \
            else "open connections per worker"
        return f"{self.name}: {self.slots} {what} ({self.setting})"


# -- WSGI servers that run requests in threads ----------------------------------------------------------------


def wsgi(environ: Mapping[str, Any] | None) -> Server | None:
    """The threaded WSGI server answering ``environ`` (or, without one, running this process), if known."""
    for read in (_gunicorn, _mod_wsgi, _uwsgi):
        found = read()
        if found is not None:
            return found
    return _waitress(environ)


def unknown(environ: Mapping[str, Any]) -> Server:
    """A WSGI server none of the above: one request at a time unless it says it runs several in threads."""
    software = str(environ.get("SERVER_SOFTWARE") or "an unknown WSGI server")
    if environ.get("wsgi.multithread"):
        return Server(software, UNKNOWN_THREADS, "assumed: its thread count cannot be read")
    return Server(software, 1, "wsgi.multithread is false")


def _gunicorn() -> Server | None:
    if "gunicorn" not in sys.modules:
        return None
    return _gunicorn_worker(os.getpid())


@functools.lru_cache(maxsize=4)
def _gunicorn_worker(pid: int) -> Server | None:
    """Per process: a worker's config does not change while it lives."""
    handler = signal.getsignal(signal.SIGUSR1)  # gunicorn's Worker.init_signals: its own handle_usr1
    worker = getattr(handler, "__self__", None)
    cfg = getattr(worker, "cfg", None)
    if cfg is None or not type(worker).__module__.startswith("gunicorn.workers"):
        return None
    kind = type(worker).__module__.rsplit(".", 1)[-1]  # sync, gthread, ggevent, geventlet, ...
    if kind == "sync":
        return Server("gunicorn's sync worker", 1, "-k gthread --threads N")
    if kind == "gthread":
        return Server("gunicorn's gthread worker", int(cfg.threads), "--threads")
    return Server(f"gunicorn's {kind} worker", int(cfg.worker_connections), "--worker-connections")


def _waitress(environ: Mapping[str, Any] | None) -> Server | None:
    if "waitress" not in sys.modules:
        return None
    channel = getattr(environ.get("waitress.client_disconnected") if environ else None, "__self__", None)
    threads = getattr(getattr(getattr(channel, "server", None), "adj", None), "threads", None)
    if threads is None and WAITRESS_THREAD.fullmatch(threading.current_thread().name):
        threads = sum(1 for thread in threading.enumerate() if WAITRESS_THREAD.fullmatch(thread.name))
    return Server("waitress", int(threads), "--threads") if threads else None


WAITRESS_THREAD = re.compile(r"waitress-\d+")
"""What waitress's ThreadedTaskDispatcher names the threads that run requests."""


def _mod_wsgi() -> Server | None:
    module = sys.modules.get("mod_wsgi")
    threads = getattr(module, "threads_per_process", None)
    return Server("mod_wsgi", int(threads), "WSGIDaemonProcess threads=") if threads else None


def _uwsgi() -> Server | None:
    module = sys.modules.get("uwsgi")
    cores = getattr(module, "cores", None)  # request slots of a worker: its threads (or async cores)
    return Server("uWSGI", int(cores), "--threads") if cores else None


# -- ASGI servers (and granian's WSGI interface) started from their command line --------------------------------


def command_line() -> Server | None:
    """The server this process runs under, read off its command line (None: not one read here)."""
    return _from_argv(tuple(sys.argv))


@functools.lru_cache(maxsize=4)
def _from_argv(argv: Sequence[str]) -> Server | None:
    if not argv:
        return None
    program = os.path.basename(argv[0])
    if program == "__main__.py":  # python -m granian
        program = os.path.basename(os.path.dirname(argv[0]))
    try:
        if program == "granian":
            return _granian(list(argv[1:]))
        if program == "uvicorn":
            return _uvicorn(list(argv[1:]))
    except Exception:  # another version's options: nothing known
        return None
    return None


def _granian(args: list[str]) -> Server:
    from granian.cli import cli

    params = cli.make_context("granian", args, resilient_parsing=True, auto_envvar_prefix="GRANIAN").params
    workers = max(1, int(params.get("workers") or 1))
    backlog = max(128, int(params.get("backlog") or 1024))
    backpressure = max(1, int(params.get("backpressure") or backlog // workers))  # granian's own default
    if str(getattr(params.get("interface"), "value", params.get("interface"))) == "wsgi":
        threads = params.get("blocking_threads") or max(1, backpressure // 2)
        if threads < backpressure:
            return Server("granian's WSGI interface", int(threads), "--blocking-threads")
    setting = "--backpressure" if params.get("backpressure") else "--backpressure, by default --backlog / --workers"
    return Server("granian", backpressure, setting, per="connection")


def _uvicorn(args: list[str]) -> Server:
    from uvicorn.main import main

    params = main.make_context("uvicorn", args, resilient_parsing=True).params
    limit = params.get("limit_concurrency")
    return Server("uvicorn", int(limit) if limit else None, "--limit-concurrency", per="connection")
