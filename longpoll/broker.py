"""Publish JSON items to topics; subscribe session generators to them.

The broker is the part an application talks to.  Without a Redis URL it runs
on the in-process log; with one, on a Redis Stream that every server process
reads, so a publish in one process reaches sessions in all of them.  Either
way a subscription is a :class:`~longpoll.subscription.Subscription` that a
generator drains and yields to wait::

    with broker.subscribe("news") as sub:
        while True:
            yield from sub.drain()
            yield sub
"""

from __future__ import annotations

from typing import Any

from .backends import DEFAULT_RETENTION, MemoryLog
from .backends.base import Log
from .hub import Hub
from .subscription import Subscription

DEFAULT_BUFFER = 1000
"""Items a subscription holds for a client that is not polling fast enough."""


class Broker:
    def __init__(self, redis_url: str | None = None, *, buffer: int = DEFAULT_BUFFER,
                 retention: int = DEFAULT_RETENTION):
        self.redis_url = redis_url
        self.redis = None
        if redis_url:
            from .backends.redis import RedisLog, connect

            self.redis = connect(redis_url)
            self.log: Log = RedisLog(self.redis, retention=retention)
        else:
            self.log = MemoryLog(retention=retention)
        self.hub = Hub(self.log, buffer=buffer)

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "memory"

    def publish(self, topic: str, item: Any) -> str:
        """Append an item for every subscriber of the topic, in every process; return its position."""
        return self.log.append(topic, item)

    def subscribe(self, topic: str, filter: Any = None, maxlen: int | None = None) -> Subscription:
        return self.hub.subscribe(topic, filter, maxlen)
