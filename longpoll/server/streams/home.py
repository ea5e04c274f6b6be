"""The home stream: statuses by the people a user follows, and the user's own, live.

Routing.  Follows and unfollows are in the log (topic ``graph``) beside the
statuses, so every hub sees both in one order.  The router keeps, for live
home subscriptions only, author -> subscriptions (the subscription's user
follows the author, or is the author); a status reaches home sessions by one
lookup on its author, and a graph event passing through the hub updates the
index of its user's subscriptions before the next status is routed.

Starting exactly.  A session starts from a snapshot of its user's following
set taken with the log position ``T`` it is true at (one atomic read).  The
hub subscription starts at its own position ``H``.  When ``H`` is past ``T``,
the index applies the graph events it dispatched in between (it remembers
the last few thousand) and the feed replays ``(T, H]`` from the log; when the
hub is behind, live items up to ``T`` are skipped, by which point the graph
events the index applied in the meantime have brought it to the snapshot.

Moving.  A durable session rebuilt elsewhere stored its position ``A``: it
takes a fresh snapshot, undoes its user's graph events in ``(A, T]`` to get
the following set at ``A``, and replays from there, applying graph events in
order, so it routes exactly as the process it left would have.

Deletions.  A session gets the deletion of a status it delivered.  Graph
events carry the newest status id at their moment, so whether the author was
followed when a status was posted is known from the session's own history of
graph changes (kept in its definition, so it moves with it).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import orjson

from ... import BackendUnavailable, Broker, Source, Subscription, open_source, order
from .router import StatusRouter
from .social import GRAPH, SocialStore, graph_event
from .store import TOPIC

HISTORY = 4096
"""Graph events the index remembers, to bring a subscription from its snapshot to the hub's position."""

SESSION_HISTORY = 1000
"""Graph changes of its user a session remembers, to decide which deletions it gets."""

SUBSCRIBE_ATTEMPTS = 5

PAGE = 1000
"""Log entries read at a time when catching up."""


class Home:
    """A home subscription's filter: whom the user follows as of a log position."""

    __slots__ = ("uid", "snapshot", "position", "watch", "initial", "stale")

    def __init__(self, uid: int, snapshot: frozenset[int], position: str, watch: frozenset[int] = frozenset()):
        self.uid = uid
        self.snapshot = snapshot
        self.position = position
        self.watch = watch  # authors whose deletions may concern the session though it does not follow them
        self.initial = snapshot  # the following set at the hub position the subscription starts at
        self.stale = False  # the index could not bring the snapshot up to that position


def _drop(index: dict[int, dict[Subscription, None]], key: int, sub: Subscription) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(sub, None)
        if not members:
            del index[key]


class HomeIndex:
    """Author -> live home subscriptions, kept current by the graph events the hub dispatches."""

    def __init__(self, history: int = HISTORY):
        self.authors: defaultdict[int, dict[Subscription, None]] = defaultdict(dict)
        self.past: defaultdict[int, dict[Subscription, None]] = defaultdict(dict)  # deletions only
        self.users: defaultdict[int, dict[Subscription, None]] = defaultdict(dict)
        self.following: dict[Subscription, set[int]] = {}
        self.watching: dict[Subscription, set[int]] = {}
        self.history: deque[tuple[tuple[int, ...], int, int, bool]] = deque(maxlen=history)
        self.forgotten: tuple[int, ...] | None = None  # position of the newest event let go

    def add(self, sub: Subscription) -> None:
        flt: Home = sub.filter
        state, watch = set(flt.snapshot), set(flt.watch)
        if sub.start is not None and order(sub.start) > order(flt.position):
            since = order(flt.position)
            flt.stale = self.forgotten is not None and self.forgotten > since
            for at, uid, other, following in self.history:
                if uid == flt.uid and at > since:
                    (state.add if following else state.discard)(other)
                    watch.add(other)
        flt.initial = frozenset(state)
        self.following[sub] = state
        self.watching[sub] = watch - state - {flt.uid}
        for author in state | {flt.uid}:
            self.authors[author][sub] = None
        for author in self.watching[sub]:
            self.past[author][sub] = None
        self.users[flt.uid][sub] = None

    def remove(self, sub: Subscription) -> None:
        state = self.following.pop(sub, None)
        if state is None:
            return
        uid = sub.filter.uid
        for author in state | {uid}:
            _drop(self.authors, author, sub)
        for author in self.watching.pop(sub):
            _drop(self.past, author, sub)
        _drop(self.users, uid, sub)

    def members(self) -> list[Subscription]:
        return list(self.following)

    def graph(self, position: str, uid: int, other: int, following: bool) -> list[Subscription]:
        """Apply a graph event; the subscriptions of its user, which get it too."""
        if len(self.history) == self.history.maxlen:
            self.forgotten = self.history[0][0]
        self.history.append((order(position), uid, other, following))
        subs = list(self.users.get(uid, ()))
        for sub in subs:
            state = self.following[sub]
            if following and other not in state:
                state.add(other)
                self.authors[other][sub] = None
            elif not following and other in state:
                state.discard(other)
                _drop(self.authors, other, sub)
                self.watching[sub].add(other)
                self.past[other][sub] = None
        return subs

    def route(self, status: dict[str, Any]) -> list[tuple[Subscription, Any]]:
        author = status.get("uid")
        if not isinstance(author, int) or isinstance(author, bool):
            return []
        subs = self.authors.get(author, {})
        if status.get("deleted"):  # the whole deletion: the feed knows whether it delivered the status
            subs = {**subs, **self.past.get(author, {})}
        return [(sub, status) for sub in subs]


class SocialRouter(StatusRouter):
    """The status router, plus home subscriptions routed by author."""

    def __init__(self, home: HomeIndex):
        super().__init__()
        self.home = home

    def add(self, sub: Subscription) -> None:
        if isinstance(sub.filter, Home):
            self.home.add(sub)
        else:
            super().add(sub)

    def remove(self, sub: Subscription) -> None:
        if isinstance(sub.filter, Home):
            self.home.remove(sub)
        else:
            super().remove(sub)

    def members(self) -> list[Subscription]:
        return super().members() + self.home.members()

    def __len__(self) -> int:
        return super().__len__() + len(self.home.following)

    def route(self, item: Any) -> list[tuple[Subscription, Any]]:
        targets = super().route(item)  # checks the status's shape first
        return targets + self.home.route(item) if self.home.users else targets


class Reader(Protocol):
    """The broker's hub, as the graph router sees it: where it is in the log while it dispatches."""

    position: str | None


class GraphRouter:
    """The ``graph`` topic: each event updates the home index and goes to its user's home sessions."""

    def __init__(self, hub: Reader, home: HomeIndex):
        self.hub = hub
        self.home = home

    def add(self, sub: Subscription) -> None:
        raise ValueError("follow the graph through a home subscription to the statuses topic")

    def remove(self, sub: Subscription) -> None:
        pass

    def route(self, item: Any) -> Iterable[tuple[Subscription, Any]]:
        uid, other, following, _ = graph_event(item)
        position = self.hub.position  # the hub dispatches under its lock with position at this entry
        return [(sub, item) for sub in self.home.graph(position or "0", uid, other, following)]

    def members(self) -> list[Subscription]:
        return []

    def __len__(self) -> int:
        return 0


class HomeFeed(Source):
    """The source behind a home-stream session (see the module's docstring).  What it learns as it goes
    (whom the user follows and followed, what it delivered) is part of its checkpoint, so it moves with
    its session."""

    def __init__(self, broker: Broker, store: SocialStore, definition: dict[str, Any],
                 checkpoint: dict[str, Any] | None = None):
        self.broker = broker
        self.identity = home_identity(broker)
        resumed = checkpoint is not None
        after = str(checkpoint["position"]) if checkpoint is not None else None
        definition = {**definition, **(checkpoint or {})}
        self.uid = int(definition["uid"])
        self.identifier = definition["identifier"]
        self.history: list[tuple[int, int, bool]] = [tuple(e) for e in definition.get("history", [])]
        self.history_floor = int(definition.get("history_floor", 0))
        for _ in range(SUBSCRIBE_ATTEMPTS):
            snap = store.home_snapshot(self.uid, 0 if resumed else int(definition.get("backfill", 0)))
            if after is not None:  # resumed
                self.start_sid = int(definition["start_sid"])
                self.backfilled = set(definition.get("backfilled", []))
                self.following = self._graph_at(broker, snap.following, snap.position, after)
                pending = definition.get("pending", [])
                # Deletions by whoever it followed since its position may still concern it.
                watch = {*definition.get("watch", []), *(other for _, other, _ in self.history), *self.following,
                         *(other for _, _, other, _ in self._graph_events(broker, after, snap.position))}
            else:
                self.start_sid = snap.sid
                self.backfilled = {status["id"] for status in snap.backfill}
                self.following = set(snap.following)
                pending = snap.backfill
                watch = {status["uid"] for status in snap.backfill}
            self.sub = broker.subscribe(TOPIC, Home(self.uid, snap.following, snap.position,
                                                    frozenset(watch - {self.uid})))
            if not self.sub.filter.stale:
                break
            self.sub.close()
        else:
            raise BackendUnavailable("the follow graph changed too fast to start a home stream; retry")
        self.watch = watch - {self.uid}
        self._pending = deque(pending)
        self.position: str = after if after is not None else snap.position
        upto = max((p for p in (snap.position, self.sub.start, self.position) if p is not None), key=order)
        self._floor = order(upto)
        self._catchup: deque[tuple[str, dict[str, Any]]] = deque()
        # The log no longer reaches back to where this session was: it is told, first.
        self._gap = resumed and any(broker.log.trimmed_after(topic, self.position) for topic in (TOPIC, GRAPH))
        try:
            self._replay(broker, self.position, upto)
        except BaseException:
            self.sub.close()
            raise

    # -- catching up from the log ------------------------------------------------

    def _graph_at(self, broker: Broker, following: frozenset[int], known: str, wanted: str) -> set[int]:
        """The following set at ``wanted``, from the one ``known`` there (graph events change one member each)."""
        state = set(following)
        if order(wanted) < order(known):
            for _, _, other, followed in reversed(self._graph_events(broker, wanted, known)):
                (state.discard if followed else state.add)(other)
        else:
            for _, _, other, followed in self._graph_events(broker, known, wanted):
                (state.add if followed else state.discard)(other)
        return state

    def _entries(self, broker: Broker, after: str, upto: str) -> Iterable[tuple[str, str, Any]]:
        for entry in _history(broker, after, upto):
            try:
                yield entry.position, entry.topic, orjson.loads(entry.raw)
            except orjson.JSONDecodeError:
                continue  # malformed: the live hub counts these

    def _graph_events(self, broker: Broker, after: str, upto: str) -> list[tuple[str, int, int, bool]]:
        """This user's graph changes in (after, upto], oldest first."""
        found = []
        for position, topic, item in self._entries(broker, after, upto):
            if topic == GRAPH:
                try:
                    uid, other, following, _ = graph_event(item)
                except TypeError:
                    continue
                if uid == self.uid:
                    found.append((position, uid, other, following))
        return found

    def _replay(self, broker: Broker, after: str, upto: str) -> None:
        """Collect what may concern this session in (after, upto]; what it gets is decided as it is taken."""
        authors = self.following | self.watch | {self.uid}
        for position, topic, item in self._entries(broker, after, upto):
            if topic == GRAPH:
                try:
                    uid, other, _, _ = graph_event(item)
                except TypeError:
                    continue
                if uid != self.uid:
                    continue
                authors.add(other)
            elif not isinstance(item, dict) or item.get("uid") not in authors:
                continue
            self._catchup.append((position, item))
            if len(self._catchup) > self.sub.maxlen:  # the live buffer's bound
                oldest = self._catchup.popleft()[1]
                if "other" in oldest:
                    self._apply(oldest)
                else:
                    self.sub.dropped += 1

    # -- the iterator --------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Where it is, and what it learnt (a new dict each time: it is stored after each batch)."""
        return {"topic": TOPIC, "log": self.broker.log.name, "position": self.position,
                "identifier": self.identifier, "uid": self.uid, "start_sid": self.start_sid,
                "backfilled": sorted(self.backfilled), "watch": sorted(self.watch),
                "history": [list(e) for e in self.history], "history_floor": self.history_floor,
                "pending": list(self._pending)}  # the statuses themselves: one may be deleted meanwhile

    def ready(self) -> bool:
        return bool(self._pending) or bool(self._catchup) or len(self.sub) > 0

    def take(self) -> tuple[bool, Any]:
        if self._gap:
            self._gap = False
            self._said_gap()
        while True:
            if self._pending:
                return True, self._pending.popleft()
            taken = self.next_entry()
            if taken is None:
                return False, None
            item = taken[1]
            if "other" in item and "message" not in item:
                self._apply(item)
                continue
            author = item.get("uid")
            if item.get("deleted"):
                if self._delivered(item["id"], author):
                    return True, {"id": item["id"], "deleted": True}
            elif author == self.uid or author in self.following:
                return True, item

    def replayed(self) -> tuple[str, Any] | None:
        return self._catchup.popleft() if self._catchup else None

    def _apply(self, event: dict[str, Any]) -> None:
        _, other, following, sid = graph_event(event)
        (self.following.add if following else self.following.discard)(other)
        self.watch.add(other)
        self.history.append((sid, other, following))
        if len(self.history) > SESSION_HISTORY:
            self.history_floor = max(self.history_floor, self.history.pop(0)[0])

    def _delivered(self, status_id: int, author: Any) -> bool:
        """Whether this session delivered that status: was its author followed when it was posted?"""
        if status_id in self.backfilled or author == self.uid and status_id > self.start_sid:
            return True
        if status_id <= self.start_sid:
            return False
        if status_id <= self.history_floor:
            return True  # history let go: a deletion too many is harmless, one too few is not
        for sid, other, following in self.history:
            if other == author and sid >= status_id:  # the first change after the status was posted
                return not following
        return author in self.following


def _history(broker: Broker, after: str, upto: str) -> Iterator[Any]:
    """The log's statuses and graph events in (after, upto], oldest first, a page at a time."""
    while order(after) < order(upto):
        entries = broker.log.topic_range((TOPIC, GRAPH), after, upto, PAGE)
        yield from entries
        if len(entries) < PAGE:
            return
        after = entries[-1].position


def home_identity(broker: Broker) -> tuple[Any, ...]:
    return (TOPIC, broker.log.name, True)


def home_feed(broker: Broker, store: SocialStore, definition: Callable[[], dict[str, Any]]) -> HomeFeed:
    """The home source of a session's recipe (or the one it opened before); ``definition()`` (identifier, uid,
    backfill) is asked only for a new one: a feed built from its checkpoint knows them."""
    return open_source(home_identity(broker), lambda checkpoint: HomeFeed(
        broker, store, definition() if checkpoint is None else {}, checkpoint))
