"""``broker.feed(topic)``: items of a topic as an iterator whose place is a log position.

A session whose generator draws only from feeds is a *recipe*: the endpoint's
function, the first poll's parameters and each feed's position say all there
is to know of it.  So longpoll may call the function again whenever it needs
to, and the session carries on exactly where it was:

- in another process, or after a restart, from the state kept in Redis
  (``durable.py``): each feed starts at its stored position and first replays
  the topic's history from there;
- in this process, when its feeds run dry.  A feed has nothing to wait with
  inside the caller's own filtering (``(m for m in feed if m["room"] == r)``
  cannot yield a Signal), so an empty feed raises :class:`FeedWait`, which
  ends the generator; the session waits on the feeds and, once one has an
  item, calls the function again, and it gets the same feed objects back.

Which feed is which is the order the function opens them in: the same
function with the same parameters opens the same feeds in the same order
(a :class:`Recorder` per session hands them back).  A generator that yields
an item not drawn from a feed (a greeting, a counter: "an item of its own")
keeps state a recipe cannot tell, and its session stays in its process.

Outside a session a feed is a plain blocking iterator.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .backends.base import Log, SessionStore, order
from .errors import BadParameter
from .history import Replayed
from .hub import Hub
from .signals import GAP
from .subscription import Subscription

MAX_BACKFILL = 10_000
"""The most items a feed may start with."""

Where = Callable[[Any], Any]
S = TypeVar("S", bound="Source")


class Topics(Protocol):
    """What a feed reads (a :class:`~longpoll.broker.Broker`): a log, the hub that reads it here, and the
    session store of the log's backend, which keeps the sessions that draw from it."""

    hub: Hub
    log: Log

    @property
    def store(self) -> SessionStore | None: ...


class FeedWait(BaseException):
    """The feeds of a session's generator have nothing now (BaseException: an ``except Exception`` in the
    caller's code must not swallow it)."""


OLDEST = "oldest"
"""A rebuilt session's feeds whose positions were lost with the session store: each starts at its log's
oldest position (what the log holds now, after it lost its data)."""


class Recorder:
    """The feeds one session's generator opened, in the order it opened them, and what they did since."""

    __slots__ = ("feeds", "resume", "opened", "stepped", "own", "gap", "mismatch")

    def __init__(self, resume: list[dict[str, Any]] | str | None = None):
        self.feeds: list[Source] = []
        self.resume = resume  # checkpoints the feeds start at: a session rebuilt from its stored state, or OLDEST
        self.opened = 0  # feeds asked for since the generator was (re)built
        self.stepped = False  # a feed gave an item since the session last took one
        self.own = False  # the generator yielded an item that no feed gave: it cannot be a recipe
        self.gap = False  # a feed lost items: the next batch says so
        self.mismatch: str | None = None

    def restart(self) -> None:
        """The generator is about to be built again: it gets its feeds back, in order."""
        self.opened = 0

    def open(self, identity: tuple[Any, ...], make: Callable[[dict[str, Any] | None], Source]) -> Source:
        n = self.opened
        self.opened += 1
        if n < len(self.feeds):
            feed = self.feeds[n]
            if feed.identity != identity:
                self.mismatch = (f"called again with the same parameters, the function opened {identity[0]!r} "
                                 f"where it had opened {feed.identity[0]!r}")
                raise FeedWait()  # the session ends it: see Session
            return feed
        if self.resume == OLDEST:
            checkpoint: dict[str, Any] | None = {"topic": identity[0], "log": identity[1], "position": "0",
                                                 "oldest": True}
        else:
            checkpoint = self.resume[n] if isinstance(self.resume, list) and n < len(self.resume) else None
        if checkpoint is not None and (checkpoint.get("topic"), checkpoint.get("log")) != identity[:2]:
            raise BadParameter("key", "this session's stored state does not match its endpoint any more")
        feed = make(checkpoint)
        self.feeds.append(feed)
        return feed

    def took(self) -> None:
        """The session took an item from the generator: was it drawn from a feed?"""
        if self.stepped:
            self.stepped = False
        else:
            self.own = True

    def ready(self) -> bool:
        return any(feed.ready() for feed in self.feeds)

    def dropped(self) -> int:
        return sum(feed.dropped for feed in self.feeds)

    def checkpoints(self) -> list[dict[str, Any]]:
        return [feed.checkpoint() for feed in self.feeds]

    def close(self) -> None:
        for feed in self.feeds:
            feed.close()


CURRENT: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("longpoll_feeds", default=None)
"""The recorder of the session whose generator runs now, if any."""


class Source:
    """What a recipe draws items from: taken without waiting, its place told by a checkpoint.  A feed
    (``broker.feed``) is one; an app writes its own to merge topics or keep state that moves with its
    session, and opens it with :func:`open_source`.

    Subclasses give ``take``, ``ready``, ``checkpoint``, ``close`` and a
    ``sub`` (the subscription that wakes the session), and may give
    ``replayed`` (the history to go through before the live items); the
    iteration, the waiting, :meth:`next_entry` and what a session's recorder
    learns are the same for all.
    """

    identity: tuple[Any, ...] = ()
    recorder: Recorder | None = None
    broker: Topics
    sub: Subscription
    position: str  # where it is in the log: what its checkpoint says
    _floor: tuple[int, ...] | None = None  # live items at or below it were replayed already

    def take(self) -> tuple[bool, Any]:
        """(True, the next item) or (False, None) when there is none now; never waits."""
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def checkpoint(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.sub.close()

    @property
    def store(self) -> SessionStore | None:
        """Where the sessions that draw from it are kept, if anywhere."""
        return self.broker.store

    @property
    def dropped(self) -> int:
        return self.sub.dropped

    @property
    def signal(self) -> Subscription:
        return self.sub

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> Any:
        found, item = self.take()
        if found:
            if self.recorder is not None:
                self.recorder.stepped = True
            return item
        if CURRENT.get() is not None:
            raise FeedWait()
        return self._wait()

    def _wait(self) -> Any:
        """Outside a session: block until an item comes."""
        arrived = threading.Event()
        self.sub.add_waiter(arrived.set)
        try:
            while True:
                found, item = self.take()
                if found:
                    return item
                arrived.wait()
                arrived.clear()
        finally:
            self.sub.remove_waiter(arrived.set)

    def next_entry(self) -> tuple[str, Any] | None:
        """The next (position, item) in the log's order: what :meth:`replayed` gives, then the subscription's
        live items past the floor; ``position`` moves to it.  None: nothing now."""
        taken = self.replayed()
        if taken is None:
            taken = self._live()
        if taken is not None:
            self.position = taken[0]
        return taken

    def replayed(self) -> tuple[str, Any] | None:
        """The next (position, item) of the history it goes through before its live items, if any."""
        return None

    def _said_gap(self) -> None:
        if self.recorder is not None:
            self.recorder.gap = True

    def _live(self) -> tuple[str, Any] | None:
        """The subscription's next (position, item) past the floor, a gap on the way said; None if none."""
        while (taken := self.sub.take()) is not None:
            position, item = taken
            if item is GAP:  # the hub's backend lost items
                self._said_gap()
                continue
            if self._floor is not None:
                if order(position) <= self._floor:
                    continue
                self._floor = None
            return taken
        return None


class Feed(Source):
    """Items published to one topic after a position, oldest first (see the module's docstring)."""

    def __init__(self, broker: Topics, topic: str, *, where: Where | None = None, backfill: int = 0,
                 filter: Any = None, deliver: Callable[[Any], Any] | None = None,
                 checkpoint: dict[str, Any] | None = None):
        self.broker = broker
        self.topic = topic
        self.where = where
        self.deliver = deliver  # what a subscription with ``filter`` gets of an item (None: nothing)
        self.identity = identity(broker, topic, filter)
        self.sub = broker.hub.subscribe(topic, filter)
        self._catchup: Replayed = []  # history to replay first: a slice of what every feed here shares
        self._next = 0
        self._gap = False
        try:
            if checkpoint is not None and checkpoint.get("oldest"):
                broker.hub.check_epoch()  # the store lost its data: so did the log, maybe before the hub saw it
            start = self.sub.start if self.sub.start is not None else broker.log.tail()
            if checkpoint is not None:
                self.position = str(checkpoint["position"])
                self._resume(start)
            else:
                self.position = start
                if backfill:
                    self._queue(broker.hub.history.newest(topic, backfill, start))
        except BaseException:
            self.sub.close()
            raise

    def _resume(self, start: str) -> None:
        """Carry on from ``position``: replay the topic's history up to where the live subscription
        begins; when this process's hub is behind the position, skip live items up to it."""
        log = self.broker.log
        if log.trimmed_after(self.topic, self.position):
            self._gap = True
        if order(start) < order(self.position):
            self._floor = order(self.position)
            return
        self._queue(self.broker.hub.history.range(self.topic, self.position, start))

    def _queue(self, replayed: Replayed) -> None:
        if self.deliver is not None:
            replayed = [(position, got) for position, item in replayed if (got := self._delivered(item)) is not None]
        extra = len(replayed) - self.sub.maxlen  # the same bound as the live buffer
        if extra > 0:
            self.sub.dropped += extra
            replayed = replayed[extra:]
        self._catchup, self._next = replayed, 0

    def _delivered(self, item: Any) -> Any:
        assert self.deliver is not None
        try:
            return self.deliver(item)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None  # malformed: the live hub counts these; do not count twice

    # -- taking -------------------------------------------------------------------

    def take(self) -> tuple[bool, Any]:
        if self._gap:
            self._gap = False
            self._said_gap()
        while (taken := self.next_entry()) is not None:
            item = taken[1]
            if self.where is None or self.where(item):
                return True, item
        return False, None

    def replayed(self) -> tuple[str, Any] | None:
        if self._next == len(self._catchup):
            return None
        taken = self._catchup[self._next]
        self._next += 1
        if self._next == len(self._catchup):
            self._catchup, self._next = [], 0  # replayed: this feed's share of the history goes
        return taken

    def ready(self) -> bool:
        return self._next < len(self._catchup) or len(self.sub) > 0

    def checkpoint(self) -> dict[str, Any]:
        """Where this feed is: what a rebuilt session's feed starts from."""
        return {"topic": self.topic, "log": self.broker.log.name, "position": self.position}

    def __repr__(self) -> str:
        return f"<longpoll feed {self.topic!r} at {self.position}>"


def identity(broker: Topics, topic: str, filter: Any) -> tuple[Any, ...]:
    """What the n-th feed a recipe opens must be again when it is called again."""
    return (topic, broker.log.name, filter is not None)


def open_source(identity: tuple[Any, ...], make: Callable[[dict[str, Any] | None], S]) -> S:
    """A source the running session's generator opens (``make(checkpoint)``), or the one it opened at this
    place before; outside a session, a new one.  ``identity`` (its topic, the log's name, then anything)
    is what the source at this place must be again when the generator is called again; a checkpoint it
    is rebuilt from carries the same topic and log name."""
    recorder = CURRENT.get()
    if recorder is None:
        return make(None)
    source = recorder.open(identity, make)
    source.recorder = recorder
    return source  # type: ignore[return-value]  # the same identity makes the same kind


def open_feed(broker: Topics, topic: str, *, where: Where | None = None, backfill: int = 0,
              filter: Any = None, deliver: Callable[[Any], Any] | None = None) -> Feed:
    """A feed, or the one the running session's generator opened at this place before."""
    if not isinstance(backfill, int) or isinstance(backfill, bool) or not 0 <= backfill <= MAX_BACKFILL:
        raise ValueError(f"backfill must be a whole number from 0 to {MAX_BACKFILL}")
    feed = open_source(identity(broker, topic, filter), lambda checkpoint: Feed(
        broker, topic, where=where, backfill=backfill, filter=filter, deliver=deliver, checkpoint=checkpoint))
    feed.where = where  # the caller's filter as this build made it (a closure over this call's arguments)
    return feed
