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

import orjson

from .backends import DEFAULT_RETENTION, STREAM, MemoryLog
from .backends.base import Log
from .errors import BadRequest, PayloadTooLarge
from .hub import Hub
from .subscription import Subscription

DEFAULT_BUFFER = 1000
"""Items a subscription holds for a client that is not polling fast enough."""


class Broker:
    """A log and the hub that reads it.

    ``stream`` names the Redis Stream (one per broker: ``longpoll serve``
    keeps its anonymous demo topics apart from the statuses, with their own
    retention); ``max_item_bytes`` refuses larger items with 413, so
    ``retention * max_item_bytes`` bounds what the log can hold.
    """

    def __init__(self, redis_url: str | None = None, *, buffer: int = DEFAULT_BUFFER,
                 retention: int = DEFAULT_RETENTION, stream: str = STREAM, max_item_bytes: int | None = None):
        self.redis_url = redis_url
        self.redis = None
        self.max_item_bytes = max_item_bytes
        if redis_url:
            from .backends.redis import RedisLog, connect

            self.redis = connect(redis_url)
            self.log: Log = RedisLog(self.redis, retention=retention, stream=stream)
        else:
            self.log = MemoryLog(retention=retention)
        self.hub = Hub(self.log, buffer=buffer)

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "memory"

    def publish(self, topic: str, item: Any) -> str:
        """Append an item for every subscriber of the topic, in every process; return its position."""
        if self.max_item_bytes is not None:
            try:
                size = len(orjson.dumps(item))
            except TypeError as exc:
                raise BadRequest(f"item is not JSON: {exc}") from None
            if size > self.max_item_bytes:
                raise PayloadTooLarge(f"an item may be at most {self.max_item_bytes} bytes of JSON, not {size}")
        return self.log.append(topic, item)

    def subscribe(self, topic: str, filter: Any = None, maxlen: int | None = None) -> Subscription:
        return self.hub.subscribe(topic, filter, maxlen)
