"""Endpoints that exist only for the tests: generators that report on themselves."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import cherrypy

import longpoll
from longpoll.gate import HoldGate
from longpoll.registry import Registry, SessionLimits

VANISHING = HoldGate()
"""The gate of Probe.vanishing's streams."""

FINALLY: defaultdict[str, threading.Event] = defaultdict(threading.Event)
"""token -> set once the generator of the session made with that token has been closed."""

SHORT_IDLE = 0.5
"""idle_timeout of the endpoints under /t/short."""


def tracked(token: str, count: Any = "1000000") -> Iterator[Any]:
    """Yields 0, 1, 2, ... with a finally block the tests can observe."""
    try:
        yield from range(int(count))
    finally:
        FINALLY[token].set()


def failing(after: Any = "2") -> Iterator[Any]:
    yield from range(int(after))
    raise RuntimeError("this generator fails on purpose: secret-detail-42")


def waiting(broker: longpoll.Broker, topic: str, token: str) -> Iterator[Any]:
    try:
        with broker.subscribe(topic) as sub:
            while True:
                yield from sub.drain()
                yield sub
    finally:
        FINALLY[token].set()


class Short:
    """Endpoints with a short idle timeout."""

    def __init__(self, broker: longpoll.Broker):
        registry = Registry(idle_timeout=SHORT_IDLE, max_sessions=100, name="tests-short")
        self.tracked = cherrypy.expose(longpoll.json_yield(registry=registry)(tracked))
        self.waiting = cherrypy.expose(longpoll.json_yield(registry=registry)(
            lambda topic, token: waiting(broker, topic, token)))
        many = Registry(idle_timeout=60, name="tests-neglect",  # expired by the test itself
                        session_limits=SessionLimits(max_sessions=5000, max_per_address=5000,
                                                     unconfirmed_idle_timeout=60))
        self.many = cherrypy.expose(longpoll.json_yield(registry=many)(
            lambda topic, token: waiting(broker, topic, token)))


class Probe:
    def __init__(self, broker: longpoll.Broker):
        self.broker = broker
        self.short = Short(broker)
        self.limited = cherrypy.expose(longpoll.json_yield(max_sessions=2)(tracked))

    @cherrypy.expose
    @longpoll.json_yield()
    def tracked(self, token: str, count: Any = "1000000") -> Iterator[Any]:
        return tracked(token, count)

    @cherrypy.expose
    @longpoll.json_yield()
    def failing(self, after: Any = "2") -> Iterator[Any]:
        return failing(after)

    @cherrypy.expose
    @longpoll.json_yield()
    def waiting(self, topic: str, token: str = "-") -> Iterator[Any]:
        return waiting(self.broker, topic, token)

    @cherrypy.expose
    @longpoll.json_yield(poll_limits=longpoll.PollLimits(heartbeat=0.2, max_stream_seconds=1.5))
    def beats(self, topic: str) -> Iterator[Any]:
        """Streams with a heartbeat every 0.2 s that end after 1.5 s."""
        return waiting(self.broker, topic, "-")

    @cherrypy.expose
    @longpoll.json_yield(registry=Registry(name="tests-vanishing", gate=VANISHING),
                         poll_limits=longpoll.PollLimits(heartbeat=0.2, max_stream_seconds=120))
    def vanishing(self, topic: str) -> Iterator[Any]:
        """Streams with a heartbeat every 0.2 s that only a failed write ends, behind a gate of their own: a
        test counts the places they hold, which the process-wide gate's count would mix with other tests'
        polls ending meanwhile."""
        return waiting(self.broker, topic, "-")
