"""Publish JSON items to topics; read them in session generators.

The broker is the part an application talks to.  Without a Redis URL it runs
on the embedded backend; with one, on Redis Streams that every server
process reads, so a publish in one process reaches sessions in all of them.

Two ways to read a topic in a ``json_yield`` generator:

- :meth:`Broker.feed` -- an iterator whose place is a log position.  A
  session that draws its items from feeds is durable on Redis: any process
  continues it, after any restart (``feed.py``)::

      return broker.feed("news")
      return (m for m in broker.feed("chat") if m["room"] == room)

- :meth:`Broker.subscribe` -- a subscription in this process that a
  generator with state of its own drains, and yields to wait; its session
  stays in the process that made it::

      with broker.subscribe("news") as sub:
          while True:
              yield from sub.drain()
              yield sub
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import orjson

from . import backends, plugin
from .backends.base import (
    DEFAULT_IDEMPOTENCY_KEYS,
    DEFAULT_IDEMPOTENCY_WINDOW,
    DEFAULT_LOG_RETENTION,
    DEFAULT_RETENTION,
    MAX_IDEMPOTENCY_KEY,
    Retention,
    order,
)
from .errors import BadParameter, BadRequest, PayloadTooLarge
from .feed import Feed, Where, open_feed
from .hub import Hub
from .subscription import Subscription
from .waits import THREADS, Call, Steps

DEFAULT_BUFFER = 1000
"""Items a subscription holds for a client that is not polling fast enough."""

_OPEN: weakref.WeakSet[Broker] = weakref.WeakSet()
"""Brokers not closed: a shared backend is closed with the last of them."""


class Position(str):
    """Where a published item is in its log: a string (a Redis stream ID, or a number in the embedded
    log) that compares as positions do, so ``"9" < "10"``."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return order(self) < order(str(other))

    def __le__(self, other: object) -> bool:
        return order(self) <= order(str(other))

    def __gt__(self, other: object) -> bool:
        return order(self) > order(str(other))

    def __ge__(self, other: object) -> bool:
        return order(self) >= order(str(other))

    __hash__ = str.__hash__


def idempotency_key(key: str, name: str) -> str:
    """``key`` if it can be a publish's idempotency key; a 400 naming ``name`` (the parameter or header it came
    in) if not: the backend holds every key for its window, so each is bounded."""
    if not isinstance(key, str) or not key:
        raise BadParameter(name, "an idempotency key is a non-empty string")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise BadParameter(name, f"an idempotency key is at most {MAX_IDEMPOTENCY_KEY} characters, not {len(key)}")
    return key


class Broker:
    """A log and the hub that reads it.

    ``retention`` is how many items each topic keeps for feeds that resume
    from a position or start with ``backfill`` (a number, a mapping of topic
    names to numbers, or a function of the name); ``log_retention`` how many
    the log of all topics keeps for hubs that fall behind; ``topic_ttl``
    seconds after its last item a topic's history goes (Redis), for topics
    anyone can make.  ``max_item_bytes`` refuses larger items with 413.
    ``name`` names the log (its Redis stream, under ``prefix``): brokers with
    their own names keep their topics and retention apart.  Brokers on one
    URL and prefix share a backend; ``backend=`` gives one of your own (two
    "processes" in one test, say).

    A publish with an idempotency ``key`` is stored once: the same key on the
    same topic within ``idempotency_window`` seconds appends nothing and
    answers the first publish's position, in every process (Redis decides).
    Each log remembers at most ``idempotency_keys`` keys (the oldest go
    first); publishes without a key are at-least-once.

    :meth:`close` (or ``with Broker(...) as broker:``) stops it for good: a
    worker script, or a test that makes brokers, leaves no reader thread and
    no Redis connections behind.
    """

    def __init__(self, redis_url: str | None = None, *, prefix: str = backends.PREFIX, name: str = "log",
                 retention: Retention = DEFAULT_RETENTION, log_retention: int = DEFAULT_LOG_RETENTION,
                 topic_ttl: float | None = None, buffer: int = DEFAULT_BUFFER, max_item_bytes: int | None = None,
                 backend: backends.Backend | None = None,
                 idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
                 idempotency_keys: int = DEFAULT_IDEMPOTENCY_KEYS):
        if not idempotency_window > 0 or not isinstance(idempotency_keys, int) or idempotency_keys < 1:
            raise ValueError("idempotency_window must be above 0 seconds, idempotency_keys at least 1")
        self.backend = backend if backend is not None else backends.open(redis_url, prefix=prefix)
        self._owns_backend = backend is None
        self.closed = False
        _OPEN.add(self)
        self.max_item_bytes = max_item_bytes
        self.log = self.backend.log(name, retention=retention, log_retention=log_retention, topic_ttl=topic_ttl,
                                    idempotency_window=idempotency_window, idempotency_keys=idempotency_keys)
        self.hub = Hub(self.log, buffer=buffer)

    def close(self) -> None:
        """Stop this broker's reader (the engine will not start it again), and close the backend's connections if
        this broker opened the backend and no other open broker shares it.  Closing twice does nothing."""
        if self.closed:
            return
        self.closed = True
        _OPEN.discard(self)
        plugin.detach(self.hub)
        self.hub.stop()
        if self._owns_backend and not any(other.backend is self.backend for other in list(_OPEN)):
            backends.forget(self.backend)
            listener = getattr(self.backend.sessions, "listener", None)  # durable sessions' release channel
            if listener is not None:
                plugin.detach(listener)
                listener.stop()
            self.backend.close()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this broker is closed; make a new one")

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def redis(self) -> Any:
        """The Redis client, or None on the embedded backend."""
        return self.backend.build(memory=lambda: None, redis=lambda client: client)

    @property
    def store(self) -> backends.SessionStore | None:
        """The backend's session store: where the sessions that draw from this broker's feeds are kept."""
        return self.backend.sessions

    @property
    def kind(self) -> str:
        return str(self.backend.kind)

    def publish(self, topic: str, item: Any, *, key: str | None = None) -> Position:
        """Append an item for every reader of the topic, in every process; return its position: an opaque
        string (``"42"`` in the embedded log, ``"1796607824926-0"`` on Redis) that orders as the log does.

        With an idempotency ``key`` (at most :data:`MAX_IDEMPOTENCY_KEY` characters), a publish that retries
        one whose answer was lost stores nothing and returns the first one's position; without one, a retry
        stores the item again (at-least-once)."""
        return THREADS.run(self.publishing(topic, item, key=key))

    def publishing(self, topic: str, item: Any, *, key: str | None = None) -> Steps[Position]:
        """:meth:`publish` as steps (``waits.py``): on an event loop, the publishes of one moment append in
        one round trip to Redis, keyed or not."""
        if not isinstance(topic, str) or not topic:
            raise ValueError("a topic is a non-empty string")
        if key is not None:
            idempotency_key(key, "key")
        self._check_open()
        try:
            raw = orjson.dumps(item)
        except TypeError as exc:
            raise BadRequest(f"item is not JSON: {exc}") from None
        if self.max_item_bytes is not None and len(raw) > self.max_item_bytes:
            raise PayloadTooLarge(f"an item may be at most {self.max_item_bytes} bytes of JSON, not {len(raw)}")
        call = (topic, raw) if key is None else (topic, raw, key)
        position = yield Call(self.log.append_json, *call, batch=self.log.appends)
        return Position(position)

    def feed(self, topic: str, *, backfill: int = 0, where: Where | None = None, filter: Any = None,
             deliver: Callable[[Any], Any] | None = None) -> Feed:
        """The items published to ``topic`` from now on (with ``backfill=N``, first its newest N), as an
        iterator that a durable session continues anywhere; ``where(item)`` keeps only the items it is true
        for (as a filter in your generator would).

        On a topic given a router of your own (``broker.hub.route``), ``filter`` is what the router indexes
        the feed's subscription by, and ``deliver(item)`` what the feed gets of an item it replays (None:
        nothing), as the router would have routed it."""
        self._check_open()
        return open_feed(self, topic, backfill=backfill, where=where, filter=filter, deliver=deliver)

    def subscribe(self, topic: str, filter: Any = None, maxlen: int | None = None) -> Subscription:
        """This process's subscription to a topic, for a generator that keeps state of its own."""
        self._check_open()
        return self.hub.subscribe(topic, filter, maxlen)
