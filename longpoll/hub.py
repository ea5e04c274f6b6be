"""The hub: one reader of the log per process, fanning items out to sessions.

However many clients poll, the process reads the backend through one thread
and one connection.  Each topic has a router that decides which
subscriptions get an item: every one (:class:`FanOut`), or only those whose
filter matches, found through an index rather than by asking each session
(see ``server/streams/router.py``).

When the backend cannot be read the hub marks every subscription with a
``BackendUnavailable`` error (polls with nothing buffered answer 503), backs
off, reconnects and continues from the last position it dispatched, so
nothing published meanwhile is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
from cherrypy.process import wspbus

from . import plugin
from .backends.base import Entry, Log
from .background import Worker
from .errors import BackendUnavailable, LongPollError
from .history import History
from .items import Shared
from .signals import GAP
from .subscription import Subscription

log = logging.getLogger("longpoll")

BLOCK_SECONDS = 1.0
"""Longest a read waits for news; bounds how long stopping the hub takes."""

EPOCH_CHECK = 2.0
"""Seconds between two looks at the backend's epoch when nothing failed."""


class Router(Protocol):
    def add(self, sub: Subscription) -> None: ...

    def remove(self, sub: Subscription) -> None: ...

    def route(self, item: Any) -> Iterable[tuple[Subscription, Any]]:
        """The subscriptions that get this item, each with what it gets."""

    def members(self) -> Iterable[Subscription]: ...

    def __len__(self) -> int: ...


class FanOut:
    """Every subscriber of the topic gets every item."""

    def __init__(self) -> None:
        self._subs: dict[Subscription, None] = {}

    def add(self, sub: Subscription) -> None:
        if sub.filter is not None:
            raise ValueError(f"topic {sub.topic!r} has no router that understands filters")
        self._subs[sub] = None

    def remove(self, sub: Subscription) -> None:
        self._subs.pop(sub, None)

    def route(self, item: Any) -> Iterable[tuple[Subscription, Any]]:
        return [(sub, item) for sub in self._subs]

    def members(self) -> Iterable[Subscription]:
        return list(self._subs)

    def __len__(self) -> int:
        return len(self._subs)


class Hub:
    """One reader of a log and the routers of its topics.

    The hub runs while the engine's longpoll plugin runs; it is attached to
    it on first subscription, not in the constructor.  Its reader thread
    holds it only weakly between reads, so a hub whose broker is dropped is
    collected and its thread ends.
    """

    def __init__(self, log: Log, *, buffer: int = 1000, bus: wspbus.Bus | None = None):
        self.log = log
        self.buffer = buffer
        self.bus = bus
        self._routers: dict[str, Router] = {}
        self._routed: set[str] = set()  # topics given a router by route(): kept when empty
        self._companions: list[Any] = []  # started and stopped with the hub (a PUBLISH bridge)
        self._lock = threading.Lock()
        self.items = Shared()  # what it routes and what feeds replay: one decoded item each
        self.history = History(log, self.items)
        self._reader = Worker("longpoll-hub", self._read_once, failed=self._read_failed, recovered=self._read_again)
        self._checked = time.monotonic()
        self._attached = False
        self.error: LongPollError | None = None
        self.position: str | None = None
        self._epoch: str | None = None
        self._epoch_lock = threading.Lock()  # the reader and a feed replaying from the oldest both ask
        self.entries = 0
        self.malformed = 0
        self.dropped = 0
        self.outages = 0

    # -- subscriptions ---------------------------------------------------

    def route(self, topic: str, router: Router) -> None:
        """Give a topic its router (before anyone subscribes to it)."""
        with self._lock:
            if self._routers.get(topic):
                raise RuntimeError(f"topic {topic!r} already has subscribers")
            self._routers[topic] = router
            self._routed.add(topic)

    def subscribe(self, topic: str, filter: Any = None, maxlen: int | None = None) -> Subscription:
        """A new subscription; its ``start`` is the last position it will not get."""
        self._attach()
        sub = Subscription(self.unsubscribe, topic, filter, maxlen or self.buffer)
        with self._lock:  # the error and the position as of the same moment as the router's
            sub.error = self.error
            sub.start = self.position
            router = self._routers.get(topic)
            if router is None:
                router = self._routers[topic] = FanOut()
            router.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            router = self._routers.get(sub.topic)
            if router is not None:
                router.remove(sub)
                if not len(router) and sub.topic not in self._routed:
                    del self._routers[sub.topic]  # anyone can make topics: keep none that nobody reads

    def subscriptions(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._routers.values())

    def topics(self) -> int:
        with self._lock:
            return len(self._routers)

    def attach(self, companion: Any) -> None:
        """Run something (``start``/``stop``) with this hub, e.g. a PUBLISH bridge into it."""
        self._companions.append(companion)
        if self._reader.running:
            companion.start()

    def _attach(self) -> None:
        if not self._attached:
            self._attached = True
            plugin.attach(self, self.bus)

    # -- the reader ------------------------------------------------------

    def start(self) -> None:
        if self._reader.running:
            return
        try:  # known before the first poll, so a session can resume up to exactly here
            self.position = self.log.tail()
            self._epoch = self.log.epoch()
        except BackendUnavailable:
            self.position = None  # the reader finds it once the backend answers
        self._reader.start()
        for companion in self._companions:
            companion.start()

    def stop(self) -> None:
        self._reader.stopping.set()
        self.log.wake()
        for companion in self._companions:
            companion.stop()
        self._reader.stop(timeout=BLOCK_SECONDS * 5)

    def __del__(self) -> None:
        self._reader.stopping.set()

    def _read_once(self) -> None:
        if self.position is None:
            self.position = self.log.tail()
        if self._reader.failures or self._epoch is None or time.monotonic() - self._checked > EPOCH_CHECK:
            self.check_epoch()
            self._checked = time.monotonic()
        entries = self.log.read(self.position, BLOCK_SECONDS)
        if entries:
            self._dispatch(entries)

    def _read_failed(self, exc: BaseException, failures: int) -> None:
        if not isinstance(exc, BackendUnavailable):
            log.exception("hub read failed", exc_info=exc)  # a bug must not end the only reader of the process
        elif failures == 1:
            self.outages += 1
            log.warning("hub cannot read the backend (%s); retrying with backoff", exc.message)
            self._fail(exc)

    def _read_again(self) -> None:
        log.warning("hub reads the backend again, from position %s", self.position)
        self._fail(None)

    def check_epoch(self) -> None:
        """Did the backend lose the log (a Redis restart without persistence)? Then what it held that this
        hub had not read is gone, every session here is told (a gap), and the history kept of it goes.  Asked
        after an outage, every EPOCH_CHECK seconds besides (redis-py reconnects on its own, and a quick
        restart shows no outage), and by a feed about to replay its topic from the log's oldest position."""
        with self._epoch_lock:
            epoch = self.log.epoch()
            changed = self._epoch is not None and epoch != self._epoch
            self._epoch = epoch
            if changed:
                self.history.forget()
        if changed:
            log.warning("the backend lost its log while away; every session here is told of a gap")
            self._gap_all()

    def _gap_all(self) -> None:
        with self._lock:
            subs = [sub for router in self._routers.values() for sub in router.members()]
            for sub in subs:
                sub.put(self.position or "0", GAP)
        for sub in subs:
            sub.notify()

    def inject(self, topic: str, raw: bytes) -> None:
        """Dispatch an item that did not come through the log (pub/sub, say).

        It gets the hub's current position, so a session resumed from it skips
        nothing of the log; it cannot be replayed to a reader that was away.
        """
        self._dispatch([Entry(self.position or "0", topic, raw)], advance=False)

    def _dispatch(self, entries: list[Entry], advance: bool = True) -> None:
        """Route entries; ``position`` moves under the same lock, so a subscription
        made at any moment knows exactly which entries it will and will not get."""
        touched: dict[Subscription, None] = {}
        with self._lock:
            for entry in entries:
                self.entries += 1
                if advance:
                    self.position = entry.position
                try:  # an item injected has no position of its own: decoded for itself
                    item = self.items.decoded(entry, shared=advance)
                except orjson.JSONDecodeError:
                    self.malformed += 1
                    log.warning("skipped an entry that is not JSON at %s", entry.position)
                    continue
                router = self._routers.get(entry.topic)
                if router is None:
                    continue
                try:
                    targets = router.route(item)
                except (TypeError, ValueError, KeyError, AttributeError):
                    self.malformed += 1
                    log.warning("skipped a malformed item at %s", entry.position)
                    continue
                for sub, delivered in targets:
                    if not sub.put(entry.position, delivered):
                        self.dropped += 1
                    touched[sub] = None
        for sub in touched:  # outside the lock: waking takes each session's own lock
            sub.notify()

    def _fail(self, error: LongPollError | None) -> None:
        with self._lock:  # with subscribe(): a new subscription sees this error or is in this list
            self.error = error
            subs = [sub for router in self._routers.values() for sub in router.members()]
        for sub in subs:
            sub.fail(error)

    def stats(self) -> dict[str, Any]:
        return {
            "subscriptions": self.subscriptions(),
            "entries_read": self.entries,
            "entries_malformed": self.malformed,
            "items_dropped": self.dropped,
            "backend_outages": self.outages,
            "backend_available": self.error is None,
        }
