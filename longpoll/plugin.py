"""The one CherryPy engine plugin longpoll needs, and the server sizing it does.

Sessions must expire, hubs must read their logs, and a held poll must not
take the thread that a ready poll needs.  All three follow the engine: the
plugin starts the hubs and the reaper when the engine starts, closes every
session and stops the hubs when it stops.

An app subscribes it as it does CherryPy's own plugins::

    longpoll.Plugin(cherrypy.engine).subscribe()

Constructors of registries and brokers touch no global state.  A registry
or hub first used without a plugin on ``cherrypy.engine`` gets a default one
(see :func:`current`), so the smallest app still works; the explicit plugin
is what also sizes CherryPy's own server before it starts.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

import cherrypy
from cherrypy.process import plugins, wspbus

from . import sizing

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("longpoll")

FREQUENCY = 1.0
"""Seconds between sweeps: sessions expire at most this late."""


class Worker(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class Plugin(plugins.SimplePlugin):
    """Expiry, hubs and server sizing for one engine.

    ``held_polls`` is how many polls the app wants to hold at once; under
    CherryPy's own server (cheroot threads) the plugin grows
    ``server.thread_pool`` to hold them with a reserve of a tenth for polls
    that have data, deepens the listen queue, and lets that many keep-alive
    connections wait (cheroot closes them past 10).  Under gevent none of
    that is needed.  The hold gate itself sizes from whichever server answers
    the request (``sizing.py``).
    """

    def __init__(self, bus: wspbus.Bus, *, held_polls: int = sizing.HELD_POLLS, frequency: float = FREQUENCY):
        super().__init__(bus)
        self.held_polls = held_polls
        self.frequency = frequency
        self.registries: weakref.WeakSet[Registry] = weakref.WeakSet()
        self.workers: weakref.WeakSet[Worker] = weakref.WeakSet()  # hubs and channel listeners
        self._task: plugins.BackgroundTask | None = None
        self._lock = threading.Lock()
        self.running = False

    # -- what the plugin looks after -------------------------------------

    def track(self, registry: Registry) -> None:
        self.registries.add(registry)

    def attach(self, worker: Worker) -> None:
        """Run a worker (a hub, a channel listener) while the engine runs; start it now if it does."""
        with self._lock:
            self.workers.add(worker)
            if self.running:
                worker.start()

    # -- the engine's channels -------------------------------------------

    def subscribe(self) -> None:
        super().subscribe()
        with _lock:
            _plugins.add(self)
        self.bus.subscribe("start", self.tune_server, priority=70)  # before cherrypy.server (75)
        self.bus.subscribe("start", self.server_started, priority=80)

    def unsubscribe(self) -> None:
        super().unsubscribe()
        self.bus.unsubscribe("start", self.tune_server)
        self.bus.unsubscribe("start", self.server_started)
        with _lock:
            _plugins.discard(self)

    def tune_server(self) -> None:
        if self.bus is cherrypy.engine:
            sizing.tune_cherrypy_server(self.held_polls)

    def server_started(self) -> None:
        if self.bus is cherrypy.engine:
            sizing.keep_clients_connected(getattr(cherrypy.server, "httpserver", None), self.held_polls)

    def start(self) -> None:
        with self._lock:
            self.running = True
            workers = list(self.workers)
        for worker in workers:
            worker.start()
        if self._task is None:
            self._task = plugins.BackgroundTask(self.frequency, self.reap, bus=self.bus)
            self._task.name = "longpoll-reaper"
            self._task.start()

    start.priority = 60  # type: ignore[attr-defined]  # hubs read before the server takes polls

    def stop(self) -> None:
        with self._lock:
            self.running = False
            workers = list(self.workers)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for registry in list(self.registries):
            registry.close_all()  # generators unsubscribe before their hubs stop
        for worker in workers:
            worker.stop()

    def reap(self) -> None:
        for registry in list(self.registries):
            try:
                registry.expire()
            except Exception:  # the BackgroundTask would die on the first error
                log.exception("expiring sessions of %s failed", registry.name)


_plugins: weakref.WeakSet[Plugin] = weakref.WeakSet()
_lock = threading.Lock()


def current(bus: wspbus.Bus | None = None) -> Plugin:
    """The plugin subscribed to ``bus`` (default: ``cherrypy.engine``), made and subscribed if there is none.

    A default plugin is a convenience for apps that never subscribed one; it
    is started at once if the engine already runs.
    """
    bus = bus if bus is not None else cherrypy.engine
    with _lock:
        plugin = next((p for p in _plugins if p.bus is bus), None)
    if plugin is None:
        plugin = Plugin(bus)
        plugin.subscribe()
        log.info("longpoll: no longpoll.Plugin on the engine; subscribed a default one")
    # STARTING too: cheroot takes requests while later start listeners still run, and a
    # plugin subscribed during the engine's start is not in that start's list.
    if bus.state in (wspbus.states.STARTING, wspbus.states.STARTED) and not plugin.running:
        plugin.start()
    return plugin


def subscribed() -> list[Any]:
    with _lock:
        return list(_plugins)
