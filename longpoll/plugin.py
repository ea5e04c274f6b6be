"""The one CherryPy engine plugin longpoll needs, and the server sizing it does.

Sessions must expire, hubs must read their logs, release channels must be
listened to, and a held poll must not take the thread that a ready poll
needs.  All of it follows the engine:

- ``start``: the hubs and listeners start and the reaper runs;
- ``stop``, first of all (before the HTTP server waits for its requests):
  every held poll answers at once (503 with ``retry_ms``: the server is
  stopping), every stream ends, and polls that arrive now do not wait; a
  client resumes its session afterwards, here or on another process;
- ``stop``, after the server: sessions close (their generators' ``finally``
  runs) and the hubs and listeners stop.

An app subscribes it as it does CherryPy's own plugins::

    longpoll.Plugin(cherrypy.engine).subscribe()

Nothing looks the plugin up: what needs running is handed to whichever
plugin is subscribed to the engine, through the engine's own channel
``longpoll.attach`` (:func:`attach`).  If none is, the first thing attached
subscribes a default one, so the smallest app still works; the explicit
plugin is what also sizes CherryPy's own server before it starts.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from typing import Any, Protocol

import cherrypy
from cherrypy.process import plugins, wspbus

from . import compat, logs, sizing
from .budget import BUDGET

log = logging.getLogger("longpoll")

FREQUENCY = 1.0
"""Seconds between sweeps: sessions expire at most this late."""

ATTACH = "longpoll.attach"
DETACH = "longpoll.detach"
STATS = "longpoll.stats"
SIGNALS = "longpoll.signals"
"""Published from the main thread by a front whose engine starts elsewhere (``asgi_front.py``): chain the signals."""


class Worker(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class Registry(Protocol):
    """What the plugin looks after in a registry of sessions (``registry.py``, which is above this module:
    everything that must run with the engine is handed here, and this module knows nothing of it)."""

    name: str
    stopping: bool
    gate: Any

    def expire(self) -> int: ...

    def stop_holding(self) -> None: ...

    def close_all(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


class Plugin(plugins.SimplePlugin):
    """Expiry, hubs, listeners, a quick stop, and server sizing for one engine.

    ``held_polls`` is how many polls the app wants to hold at once; under
    CherryPy's own server (cheroot threads) the plugin grows
    ``server.thread_pool`` to hold them with a reserve of a tenth for polls
    that have data, deepens the listen queue, and lets that many keep-alive
    connections wait (cheroot closes them past 10).  The hold gate itself
    sizes from whichever server answers the request (``sizing.py``).
    """

    def __init__(self, bus: wspbus.Bus, *, held_polls: int = sizing.HELD_POLLS, frequency: float = FREQUENCY,
                 signals: bool = True):
        """``signals``: on SIGTERM, SIGINT and SIGQUIT, answer held polls at once before whatever handled
        the signal before (granian, gunicorn and uvicorn wait for every request before they tell the app they stop;
        CherryPy's own handler stops the engine, which does it too)."""
        super().__init__(bus)
        self.held_polls = held_polls
        self.frequency = frequency
        self.signals = signals
        self._chained: dict[int, Any] = {}
        self.registries: weakref.WeakSet[Any] = weakref.WeakSet()
        self.workers: weakref.WeakSet[Any] = weakref.WeakSet()  # hubs, channel listeners, syndicators
        self._task: plugins.BackgroundTask | None = None
        self._lock = threading.Lock()
        self.running = False

    # -- what the plugin looks after -------------------------------------

    def attach(self, thing: Any) -> bool:
        """Look after a registry (expiry, the quick stop) or run a worker (``start``/``stop``) while the engine
        runs, starting it now if it does."""
        with self._lock:
            if callable(getattr(thing, "expire", None)):  # a registry: looked after, never started
                self.registries.add(thing)
                return True
            self.workers.add(thing)
            running = self.running
        if running:
            thing.start()
        return True

    def detach(self, thing: Any) -> bool:
        """Look after ``thing`` no more: its owner stopped it for good (``Broker.close``), and a later start of
        the engine must not start it again."""
        with self._lock:
            self.registries.discard(thing)
            self.workers.discard(thing)
        return True

    def stats(self) -> tuple[list[Registry], list[Any]]:
        with self._lock:
            return list(self.registries), list(self.workers)

    # -- the engine's channels -------------------------------------------

    def subscribe(self) -> None:
        super().subscribe()
        if self.bus is cherrypy.engine:
            logs.to_cherrypy()
        self.bus.subscribe(ATTACH, self.attach)
        self.bus.subscribe(DETACH, self.detach)
        self.bus.subscribe(STATS, self.stats)
        self.bus.subscribe(SIGNALS, self._chain_signals)
        self.bus.subscribe("start", self.tune_server, priority=70)  # before cherrypy.server (75)
        self.bus.subscribe("start", self.server_started, priority=80)
        self.bus.subscribe("stop", self.stopping, priority=10)  # before the HTTP server (50) waits for requests

    def unsubscribe(self) -> None:
        super().unsubscribe()
        self.bus.unsubscribe(ATTACH, self.attach)
        self.bus.unsubscribe(DETACH, self.detach)
        self.bus.unsubscribe(STATS, self.stats)
        self.bus.unsubscribe(SIGNALS, self._chain_signals)
        self.bus.unsubscribe("start", self.tune_server)
        self.bus.unsubscribe("start", self.server_started)
        self.bus.unsubscribe("stop", self.stopping)

    def tune_server(self) -> None:
        if self.bus is cherrypy.engine:
            sizing.tune_cherrypy_server(self.held_polls)

    def server_started(self) -> None:
        if self.bus is cherrypy.engine:
            sizing.keep_clients_connected(getattr(cherrypy.server, "httpserver", None), self.held_polls)

    def start(self) -> None:
        compat.check()  # a dependency that changed under longpoll stops the start, saying which
        with self._lock:
            self.running = True
            workers = list(self.workers)
            registries = list(self.registries)
        for registry in registries:
            registry.stopping = False
            registry.gate.open()
        for worker in workers:
            worker.start()
        if self.signals:
            self._chain_signals()
        if self.bus is cherrypy.engine:
            sizing.check_server(self.held_polls)
        if self._task is None:
            self._task = plugins.BackgroundTask(self.frequency, self.reap, bus=self.bus)
            self._task.name = "longpoll-reaper"
            self._task.start()

    start.priority = 60  # type: ignore[attr-defined]  # hubs read before the server takes polls

    def stopping(self) -> None:
        """The engine begins to stop: held polls answer now, streams end, no poll waits from here on."""
        for registry in self.stats()[0]:
            registry.stop_holding()

    def _chain_signals(self) -> None:
        """Answer held polls on a stop signal, then do what was done before (only the main thread may)."""
        if threading.current_thread() is not threading.main_thread() or self._chained:
            return
        # Not SIGHUP: servers that stop a process on it do so with a SIGTERM to it (gunicorn, granian) or
        # through the engine (CherryPy's own handler), and under CherryPy it may mean a reload in place.
        for name in ("SIGTERM", "SIGINT", "SIGQUIT"):
            number = getattr(signal, name, None)
            if number is None:
                continue
            previous = signal.getsignal(number)
            if previous is None:
                continue  # set from outside Python: leave it alone
            self._chained[number] = previous
            signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, frame: Any) -> None:
        # Not here: this thread may be inside a lock the stop needs (a signal comes between any two lines).
        threading.Thread(target=self.stopping, name="longpoll-stopping", daemon=True).start()
        previous = self._chained.get(number, signal.SIG_DFL)
        if callable(previous):
            previous(number, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)  # what would have happened: the process ends

    def stop(self) -> None:
        with self._lock:
            self.running = False
            workers = list(self.workers)
            registries = list(self.registries)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for registry in registries:
            registry.close_all()  # generators unsubscribe before their hubs stop
        for worker in workers:
            worker.stop()

    stop.priority = 70  # type: ignore[attr-defined]  # after the HTTP server has stopped

    def reap(self) -> None:
        for registry in self.stats()[0]:  # copied under the lock: attach() may add one meanwhile
            try:
                registry.expire()
            except Exception:  # the BackgroundTask would die on the first error
                log.exception("expiring sessions of %s failed", registry.name)
        BUDGET.enforce()  # streams that all wait make no frame to find the process past its budget


def ensure(bus: wspbus.Bus | None = None) -> None:
    """A plugin on ``bus``, a default one subscribed if there is none, before the engine starts: one made on
    the first request would start too late to chain the stop signals, which only the main thread may."""
    bus = bus if bus is not None else cherrypy.engine
    if not bus.listeners.get(ATTACH):
        _subscribe_default(bus)


def attach(thing: Any, bus: wspbus.Bus | None = None) -> None:
    """Run ``thing`` (``start()``/``stop()``, a :class:`~longpoll.Worker`'s owner, say) while the engine runs:
    hand it to the plugin subscribed to ``bus`` (default ``cherrypy.engine``), subscribing a default plugin
    if there is none.  A default plugin is started at once if the engine already runs."""
    bus = bus if bus is not None else cherrypy.engine
    if bus.publish(ATTACH, thing):
        return
    plugin = _subscribe_default(bus)
    # STARTING too: cheroot takes requests while later start listeners still run, and a
    # plugin subscribed during the engine's start is not in that start's list.
    if bus.state in (wspbus.states.STARTING, wspbus.states.STARTED):
        plugin.start()
    plugin.attach(thing)


def detach(thing: Any, bus: wspbus.Bus | None = None) -> None:
    """Take ``thing`` from the plugins on ``bus`` (default ``cherrypy.engine``), if any has it."""
    (bus if bus is not None else cherrypy.engine).publish(DETACH, thing)


def _subscribe_default(bus: wspbus.Bus) -> Plugin:
    plugin = Plugin(bus)
    plugin.subscribe()
    log.info("longpoll: no longpoll.Plugin on the engine; subscribed a default one")
    return plugin


def running(bus: wspbus.Bus | None = None) -> tuple[list[Registry], list[Any]]:
    """The registries and workers the plugins on ``bus`` look after (for the counters)."""
    registries: dict[int, Registry] = {}
    workers: dict[int, Any] = {}
    for found_registries, found_workers in (bus if bus is not None else cherrypy.engine).publish(STATS):
        registries.update((id(r), r) for r in found_registries)
        workers.update((id(w), w) for w in found_workers)
    return list(registries.values()), list(workers.values())
