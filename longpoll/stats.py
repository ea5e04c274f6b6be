"""The process's counters, added up for an app's own /stats.

Nothing is counted twice: registries and hubs keep their own counters and
this module only adds them up when asked.  The Prometheus text of the same
figures belongs to the server product (``longpoll.server.metrics``), so an
embedder does not install prometheus_client for an endpoint it may not have.
"""

from __future__ import annotations

import weakref
from typing import Any

from . import plugin
from .budget import BUDGET
from .gate import HELD
from .hub import Hub

COUNTERS = ("polls", "items_delivered", "items_dropped", "sessions_created", "sessions_expired", "sessions_resumed",
            "entries_read", "entries_malformed", "backend_outages", "streams_ended_by_budget")
GAUGES = ("sessions", "held_polls", "subscriptions", "stream_bytes_unsent")

SOURCES: weakref.WeakSet[Any] = weakref.WeakSet()
"""Other counters to add up: objects with a ``stats()`` of name -> int (hydrators, syndication)."""


def track(source: Any) -> None:
    """Add an object's counters (its ``stats()``: name -> int) to the process's, as long as it lives."""
    SOURCES.add(source)


def snapshot() -> dict[str, Any]:
    totals: dict[str, Any] = dict.fromkeys(COUNTERS + GAUGES, 0)
    registries, workers = plugin.running()
    for registry in registries:
        for name, value in registry.stats().items():
            totals[name] += value
    available = True
    for hub in (w for w in workers if isinstance(w, Hub)):
        stats = hub.stats()
        available = available and stats.pop("backend_available")
        for name, value in stats.items():
            totals[name] += value
    for source in list(SOURCES):
        for name, value in source.stats().items():
            totals[name] = totals.get(name, 0) + value
    totals["held_polls"] = HELD.held
    totals.update(BUDGET.stats())
    totals["backend_available"] = available
    return totals
