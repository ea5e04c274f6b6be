"""The one reaper of the process: a CherryPy engine plugin.

It starts and stops with ``cherrypy.engine``, so an app that embeds longpoll
gets expiry without starting anything itself.  Every tick it expires idle
sessions of every registry (closing their generators, so their ``finally``
blocks run); when the engine stops it closes all sessions.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING

import cherrypy
from cherrypy.process import plugins, wspbus

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("longpoll")

FREQUENCY = 1.0
"""Seconds between sweeps: sessions expire at most this late."""


class Reaper(plugins.Monitor):
    def __init__(self, bus: wspbus.Bus, frequency: float = FREQUENCY):
        super().__init__(bus, self.reap, frequency, name="longpoll-reaper")
        self.registries: weakref.WeakSet[Registry] = weakref.WeakSet()

    def reap(self) -> None:
        for registry in list(self.registries):
            try:
                registry.expire()
            except Exception:  # the BackgroundTask would die on the first error
                log.exception("expiring sessions of %s failed", registry.name)

    def stop(self) -> None:
        super().stop()
        for registry in list(self.registries):
            registry.close_all()

    stop.priority = 40  # before the hub stops (50): generators unsubscribe first


_reaper: Reaper | None = None
_lock = threading.Lock()


def track(registry: Registry) -> None:
    """Put a registry under the process's reaper, creating it on first use."""
    global _reaper
    with _lock:
        if _reaper is None:
            _reaper = Reaper(cherrypy.engine)
            _reaper.subscribe()
        if cherrypy.engine.state == wspbus.states.STARTED and _reaper.thread is None:
            _reaper.start()  # the registry was made after the engine started
        _reaper.registries.add(registry)


def registries() -> list[Registry]:
    return list(_reaper.registries) if _reaper is not None else []
