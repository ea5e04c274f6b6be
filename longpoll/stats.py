"""The process's counters, as JSON for /stats and Prometheus text for /metrics.

Nothing is counted twice: registries and hubs keep their own counters and
this module only adds them up when asked.  The Prometheus text format comes
from prometheus_client, through a collector that reads the same figures.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import plugin
from .gate import HELD
from .hub import Hub

COUNTERS = ("polls", "items_delivered", "items_dropped", "sessions_created", "sessions_expired", "sessions_resumed",
            "entries_read", "entries_malformed", "backend_outages")
GAUGES = ("sessions", "held_polls", "subscriptions")

SOURCES: weakref.WeakSet[Any] = weakref.WeakSet()
"""Other counters to add up: objects with a ``stats()`` of name -> int (hydrators, syndication)."""


def track(source: Any) -> None:
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
    totals["backend_available"] = available
    return totals


class _Collector:
    def collect(self) -> Iterator[Metric]:
        figures = snapshot()
        for name in GAUGES:
            yield GaugeMetricFamily(f"longpoll_{name}", f"Current {name.replace('_', ' ')}", value=figures[name])
        for name in COUNTERS + tuple(n for n in figures if n not in COUNTERS + GAUGES + ("backend_available",)):
            yield CounterMetricFamily(f"longpoll_{name}", f"Total {name.replace('_', ' ')}", value=figures[name])
        yield GaugeMetricFamily("longpoll_backend_available", "1 when the backend can be read",
                                value=int(figures["backend_available"]))


_REGISTRY = CollectorRegistry(auto_describe=False)
_REGISTRY.register(_Collector())  # type: ignore[arg-type]


def prometheus_text() -> bytes:
    return generate_latest(_REGISTRY)
