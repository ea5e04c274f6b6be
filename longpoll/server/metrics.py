"""Prometheus text for /metrics: the figures of ``longpoll.stats``, through a collector that reads them when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..stats import COUNTERS, GAUGES, snapshot


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
_REGISTRY.register(_Collector())


def prometheus_text() -> bytes:
    return generate_latest(_REGISTRY)
