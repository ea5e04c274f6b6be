"""One client's server-held generator, cut into batches by its polls.

The session owns the cursor rules of docs/protocol.md: a poll with the newest
cursor acknowledges the batches sent and takes the next one; a poll with the
cursor a sent batch was asked with gets that batch again (its answer was
lost); anything else is refused.  A poll's answers go one at a time, so what
is sent and not yet acknowledged is one batch; a stream (SSE, JSON lines)
sends batch after batch without waiting, and keeps them (up to
MAX_UNACKNOWLEDGED items) until the client's next poll or reconnect says
which it got.  The generator is only ever advanced under ``_lock``, so two
polls on one key cannot interleave a batch; a newer poll releases an older
held one, which then answers at once with what it has (an empty batch, as a
poll only waits while it has nothing).

Items may be missing in only two ways, and both are said: ``dropped`` (a
slow session's buffer overflowed) and ``gap`` (the generator yielded
:data:`~longpoll.signals.GAP`, or a feed's history no longer reached back).

A session made from a *recipe* (its endpoint's function and the first
poll's parameters, ``start``) whose items all come from feeds can be built
again at any time (``feed.py``): when its feeds run dry, and in another
process from its :meth:`checkpoint`.

A poll is a generator of steps (:meth:`Session.steps`, see ``waits.py``): it
takes a batch, or yields a ``Wait`` while there is none, and returns the
batch.  Waiting uses a second, tiny lock (``_mutex``) and one waiter per
session: a producer waking the session never blocks behind a generator that
is busy computing, and only one poll of a session waits at a time (a newer
one releases it first).  The waiter is whatever the strategy running the
steps armed: a parked thread's lock, or a future on an event loop.

A durable session's cursors are signed (``<batch>.<mac>``, with a nonce
made from the deployment's secret and the key, ``keys.nonce``), so that a client whose cursor is ahead of the
stored session can be told from one that makes a cursor up: the first had a
batch that the store lost, the second is refused, and nothing changes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from . import encoding, signals
from .errors import BadParameter, Expired, GeneratorFailed, LongPollError
from .feed import CURRENT, FeedWait, Recorder, Source
from .gate import HoldGate
from .items import Item
from .signals import GAP, Signal
from .waits import THREADS, Steps, Wait

log = logging.getLogger("longpoll")

READY = "ready"
DONE = "done"

MAX_WATCHED = 8
"""Signals a session stays registered with; older ones are let go."""

Encode = Callable[[Any], bytes]
"""An item's JSON; raises encoding.NotJSON for an item that cannot be sent."""

MAX_UNACKNOWLEDGED = 1000
"""Items a stream's sent batches may hold before the oldest are let go (a reconnect behind them is a gap)."""

MAX_UNACKNOWLEDGED_BYTES = 1024 * 1024
"""Bytes of JSON a stream's sent batches may hold, likewise: what a session keeps is bounded in bytes."""

MAX_BATCH_BYTES = 256 * 1024
"""A batch ends once its items reach this many bytes of JSON (with at least one item), whatever ``max`` is."""

RETRY_MS_WHEN_FULL = 1000
"""What a poll turned away by the hold gate tells the client to wait."""

MAX_BATCH = 2**63 - 1
"""The largest batch number a cursor may name: what a session store (JSON, Lua) holds exactly."""

MAC_BYTES = 6


@dataclass(slots=True)
class Poll:
    """One poll of a session: what the client asked, and how this front takes it."""

    cursor: str | None
    timeout: float = 0.0
    max_items: int = 100
    encode: Encode = encoding.dumps
    gate: HoldGate | None = None  # where a poll claims its place to wait; closed: the process stops, none waits
    placed: bool = False  # the caller holds a place at the gate already (a stream, for its whole life)
    keep: bool = False  # a stream's poll after its first: what it sends stays until the client acknowledges it
    follow: int | None = None  # the ticket of the stream's previous poll: it goes on as that poll
    before_wait: Callable[[], None] | None = None  # runs once the generator has run, before the poll first waits
    max_bytes: int = MAX_BATCH_BYTES  # a batch ends once its items reach this many bytes of JSON
    streamed: bool = False  # a stream's: its items count as delivered once its connection took them (transports.py)

    @property
    def asked(self) -> str:
        return "0" if self.cursor is None else self.cursor

    def at_once(self) -> Poll:
        """This poll, not waiting (every poll on an event loop first looks so: ``dataclasses.replace`` costs
        several times this)."""
        return Poll(self.cursor, 0.0, self.max_items, self.encode, self.gate, self.placed, self.keep, self.follow,
                    self.before_wait, self.max_bytes, self.streamed)


class Batch:
    """What one poll answers: ``parts`` are its items' JSON, each encoded once (an item from the log is the
    bytes every session that sends it shares)."""

    __slots__ = ("state", "cursor", "parts", "dropped", "retry_ms", "fresh", "gap", "released", "ticket",
                 "waited")

    def __init__(self, state: str, cursor: str, parts: tuple[bytes, ...] = (), dropped: int = 0,
                 retry_ms: int | None = None, fresh: bool = False, gap: bool = False, released: bool = False):
        self.state = state
        self.cursor = cursor
        self.parts = parts
        self.dropped = dropped
        self.retry_ms = retry_ms
        self.fresh = fresh  # False for a re-sent or empty batch: nothing newly delivered
        self.gap = gap  # items before these were lost: the client may re-fetch what it needs
        self.released = released  # a newer poll of the session took over
        self.ticket = 0  # the poll's number on its session: a stream's next poll goes on with it
        self.waited = False  # the poll was held before it answered

    @property
    def count(self) -> int:
        return len(self.parts)

    @property
    def raw(self) -> bytes:
        """The items as one JSON array."""
        return encoding.join(self.parts)

    @property
    def items(self) -> list[Any]:
        return orjson.loads(self.raw)

    def to_json(self, key: str) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state, "key": key, "cursor": self.cursor,
                                "items": orjson.Fragment(self.raw)}
        if self.dropped:
            body["dropped"] = self.dropped
        if self.gap:
            body["gap"] = True
        if self.retry_ms is not None:
            body["retry_ms"] = self.retry_ms
        return body


class Sent(NamedTuple):
    """A batch sent and not yet acknowledged."""

    asked: str  # the cursor it was asked with
    cursor: str
    parts: tuple[bytes, ...]
    state: str
    gap: bool
    size: int  # bytes of JSON in it

    @classmethod
    def of(cls, asked: str, batch: Batch) -> Sent:
        return cls(asked, batch.cursor, batch.parts, batch.state, batch.gap, sum(map(len, batch.parts)))


def batch_number(cursor: str | None) -> int | None:
    """The batch a cursor names (``"12"``, or ``"12.<mac>"`` for a durable session), or None for one this
    server never issues; a number past what a store holds exactly is a 400 naming the cursor."""
    if cursor is None:
        return None
    number, _, _ = cursor.partition(".")
    if not number.isdigit() or not number.isascii():
        return None
    if len(number) > 19 or int(number) > MAX_BATCH:
        raise BadParameter("cursor", "names no batch of this session; send the cursor of the last response")
    return int(number)


def sign(nonce: bytes, key: str, seq: int, items: int | None = None) -> str:
    """A durable session's cursor for batch ``seq``: only what holds the session's nonce can make it.  A
    replayed session's (``items``: how many it sent up to that batch) is ``<batch>.<items>.<mac>``."""
    if not seq:
        return "0"
    if items is None:
        mac = hashlib.blake2b(b"%s %d" % (key.encode(), seq), key=nonce, digest_size=MAC_BYTES).digest()
        return f"{seq}.{base64.urlsafe_b64encode(mac).decode()}"
    mac = hashlib.blake2b(b"%s %d %d" % (key.encode(), seq, items), key=nonce, digest_size=MAC_BYTES).digest()
    return f"{seq}.{items}.{base64.urlsafe_b64encode(mac).decode()}"


def items_of(cursor: str) -> int | None:
    """How many items a replayed session's cursor says were sent up to its batch (None: not such a cursor)."""
    parts = cursor.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[1].isascii() or len(parts[1]) > 19:
        return None
    return int(parts[1])


Start = Callable[[], Any]
"""Builds the session's iterator (its endpoint's function, called with the first poll's parameters)."""


class Session:
    __slots__ = (
        "key", "tag", "owner", "quotas", "origin", "born", "last_seen", "served", "_allowance", "_checked",
        "_start", "feeds", "_it", "_lock", "_mutex", "_waiter", "_woken", "_ticket", "_inflight", "_watched",
        "_seq", "_cursor", "_sent", "_let_go", "_gap", "_closed", "stale", "_finished", "_failure",
        "store", "stored", "lease", "nonce", "kept_until", "replay", "_items", "__weakref__",
    )

    def __init__(self, key: str, start: Start | Iterator[Any], tag: Any = None, owner: str | None = None,
                 quotas: tuple[tuple[str, str], ...] = (), *, recorder: Recorder | None = None,
                 origin: dict[str, Any] | None = None):
        """``start`` is a recipe (called now, and again whenever the session is rebuilt) or a ready iterator;
        ``origin`` the JSON that names the recipe in a stored session (endpoint, arguments)."""
        self.key = key
        self.tag = tag  # what the session was created for (checked on later polls)
        self.owner = owner  # the client identity it counts against (sessions per identifier)
        self.quotas = quotas  # the registry's caps it counts against: ("owner", id), ("address", ip)
        self.origin = origin
        self.born = self.last_seen = time.monotonic()
        self.served = 0  # polls that have ended
        self._allowance = -1.0  # poll tokens; filled on the first admit()
        self._checked = self.last_seen
        self.feeds = recorder if recorder is not None else Recorder()  # the feeds its generator opened
        self._start = start if callable(start) else None
        self._it: Iterator[Any] | None = None
        self._lock = threading.Lock()  # the generator and the batch state
        self._mutex = threading.Lock()  # the poll numbers, and parking and waking held polls
        self._waiter: Callable[[], None] | None = None  # wakes the one waiting poll
        self._woken = False
        self._ticket = 0  # the newest poll's number; an older poll that sees a newer one gives way
        self._inflight = 0
        self._watched: tuple[Signal, ...] = ()  # replaced, never mutated: read without the lock
        self._seq = 0
        self._cursor = "0"  # cursor of the last batch sent
        self._sent: list[Sent] = []  # sent and not acknowledged, oldest first
        self._let_go = 0  # the newest batch number let go from _sent unacknowledged (a stream's overflow)
        self._gap = False  # the generator said items were lost: the next batch says so
        self._closed = False
        self.stale = False  # closed as a copy that went stale: the session itself lives on elsewhere
        self._finished = False
        self._failure: LongPollError | None = None
        self.store: Any = None  # the session store that keeps it (lifecycle.py), if any
        self.stored = -1  # the batch number the session store holds (-1: not stored)
        self.lease = 0  # the store's count of takeovers when this process took it over
        self.kept_until = 0.0  # time.monotonic() until which the store keeps its record, as far as known
        self.replay = False  # a pure function of its parameters: any process rebuilds it by replay (sign())
        self._items = 0  # items sent up to the last batch (a replayed session's cursors say it)
        self.nonce: bytes | None = None  # a durable session's: signs its cursors (:func:`sign`)
        if self._start is None:
            self._it = iter(start)  # type: ignore[arg-type]
        else:
            try:
                self._build()
            except FeedWait:
                self._it = None  # it took from a feed at once, and found nothing: built again once there is

    # -- what it is ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def seq(self) -> int:
        """The number of the last batch sent."""
        return self._seq

    def recipe(self) -> bool:
        """Whether the session can be built again from its origin and its feeds' positions."""
        return self._start is not None and self.origin is not None and bool(self.feeds.feeds) \
            and not self.feeds.own and self.feeds.mismatch is None

    def admit(self, rate: float, burst: float) -> float:
        """A token bucket of polls: 0 if this poll may go ahead, else seconds to wait."""
        now = time.monotonic()
        if self._allowance < 0:
            self._allowance = burst
        self._allowance = min(burst, self._allowance + (now - self._checked) * rate)
        self._checked = now
        if self._allowance >= 1:
            self._allowance -= 1
            return 0.0
        return (1 - self._allowance) / rate

    def idle_since(self, now: float) -> float | None:
        """Seconds since the last poll ended; None while a poll is in flight."""
        return None if self._inflight else now - self.last_seen

    # -- its state elsewhere -------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """What a session store keeps to build this session again in another process."""
        return {"seq": self._seq, "let_go": self._let_go, "gap": self._gap or self.feeds.gap,
                "finished": self._finished, "feeds": self.feeds.checkpoints(),
                "nonce": self.nonce.hex() if self.nonce is not None else None,
                "sent": [[s.asked, s.cursor, orjson.Fragment(encoding.join(s.parts)), s.state, s.gap]
                         for s in self._sent]}

    @classmethod
    def restore(cls, key: str, start: Start, state: dict[str, Any], *, tag: Any, owner: str | None,
                quotas: tuple[tuple[str, str], ...], origin: dict[str, Any]) -> Session:
        """A session built again from a checkpoint, at the same batch and cursors."""
        session = cls(key, start, tag, owner, quotas, recorder=Recorder(resume=state["feeds"]), origin=origin)
        session._restore(state)
        return session

    def _restore(self, state: dict[str, Any]) -> None:
        self._seq = self.stored = state["seq"]
        self.nonce = bytes.fromhex(state["nonce"]) if state.get("nonce") else None
        self._cursor = self._cursor_of(self._seq)
        self._sent = [Sent(asked, cursor, parts, st, gap, sum(map(len, parts)))
                      for asked, cursor, parts, st, gap
                      in ((e[0], e[1], _parts(e[2]), e[-2], e[-1]) for e in state["sent"])]
        self._let_go = state["let_go"]
        self._gap = state["gap"]
        self._finished = state["finished"]

    @staticmethod
    def check(state: dict[str, Any], key: str, cursor: str | None) -> None:
        """A stored session's cursor rules, applied to a poll before anything is taken over or built: the
        same 400 a live session gives, and nothing changes."""
        probe = Session.__new__(Session)
        probe.key = key
        probe._closed = probe._finished = False
        probe._failure = None
        probe.stale = False
        probe.replay = False
        probe._items = 0
        probe._restore(state)
        probe._finished = False  # what a done session answers is the live session's to say
        probe._match(cursor or "0")

    def sign(self, nonce: bytes, batch: Batch, replay: bool = False) -> None:
        """The session is durable (or, with ``replay``, rebuilt anywhere by replaying its generator) from
        its first batch on: its cursors are signed from now, that batch's (not yet sent) too."""
        with self._lock:
            self.nonce = nonce
            self.replay = replay
            self._cursor = self._cursor_of(self._seq)
            self._sent = [s._replace(cursor=self._cursor_of(batch_number(s.cursor) or 0)) for s in self._sent]
            if batch.cursor != "0":
                batch.cursor = self._cursor_of(batch_number(batch.cursor) or 0)

    def _cursor_of(self, seq: int) -> str:
        if self.nonce is None:
            return str(seq)
        return sign(self.nonce, self.key, seq, self._items if self.replay else None)

    def _adopt(self, cursor: str) -> None:
        """Under the lock: the client holds a batch newer than any this copy knows, which this session
        signed (its store lost the last writes, or another process replayed it): carry on from there,
        numbering after the client's.  A replayed session skips what the client has, built again first
        when this copy went past it; a durable one says that items may be missing or repeated."""
        self._seq = batch_number(cursor) or 0
        self._cursor = cursor
        self._sent = []
        if not self.replay:
            self._gap = True
            return
        items = items_of(cursor) or 0
        if items < self._items or self._it is None:
            self._build()
            self._items = 0
        self._skip(items - self._items)
        self._items = items

    def _skip(self, n: int) -> None:
        """Advance the generator past ``n`` items (what the client acknowledged, replayed)."""
        assert self._it is not None
        token = CURRENT.set(self.feeds)
        try:
            while n > 0:
                value = next(self._it)
                if value is not GAP and not isinstance(value, Signal):
                    n -= 1
        except StopIteration:
            self._finished = True
        finally:
            CURRENT.reset(token)

    def ahead(self, cursor: str | None) -> bool:
        """Whether a client's cursor names a batch after the newest this copy has sent."""
        number = batch_number(cursor)
        return number is not None and number > self._seq

    # -- polls ---------------------------------------------------------------------------

    def poll(self, poll: Poll) -> Batch:
        """The next batch, waiting on this thread while there is none (up to ``poll.timeout``)."""
        return THREADS.run(self.steps(poll))

    def steps(self, poll: Poll) -> Steps[Batch]:
        """A poll: the next batch, with a ``Wait`` yielded while there is none (up to ``poll.timeout``)."""
        ticket = self.begin(poll)
        gate = poll.gate if not poll.placed else None
        holding = False
        try:
            batch = self.first(ticket, poll) or self.take(ticket, poll)
            deadline = time.monotonic() + poll.timeout
            while batch is None:
                if time.monotonic() >= deadline or (poll.gate is not None and poll.gate.closed):
                    batch = self.empty(poll, waited=holding)
                    break
                if not holding:
                    if gate is not None and not gate.enter():
                        batch = self.empty(poll, retry_ms=RETRY_MS_WHEN_FULL)
                        break
                    holding = True
                    if poll.before_wait is not None:
                        poll.before_wait()
                yield Wait(self, ticket, deadline)
                batch = self.take(ticket, poll)
                if batch is not None:
                    batch.waited = holding
            batch.ticket = ticket
            return batch
        finally:
            if holding and gate is not None:
                gate.leave()
            self.end()

    def begin(self, poll: Poll) -> int:
        """A poll starts: its ticket, and an older held poll of this session answers now."""
        with self._mutex:
            if poll.follow is None:
                self._ticket += 1
            ticket = self._ticket
            self._inflight += 1
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()
        return ticket

    def end(self) -> None:
        with self._mutex:
            self._inflight -= 1
            self.served += 1
            self.last_seen = time.monotonic()

    def first(self, ticket: int, poll: Poll) -> Batch | None:
        """What the cursor rules answer before anything is taken: a batch to send again, or ``released``
        for a stream whose next poll finds a newer one began; None to go on taking."""
        if poll.follow is not None and poll.follow != ticket:
            return self.empty(poll, released=True, ticket=ticket)
        with self._lock:
            batch = self._acknowledge(poll.asked, poll.keep)
        if batch is not None:
            batch.ticket = ticket
        return batch

    def take(self, ticket: int, poll: Poll) -> Batch | None:
        """The next batch if one is ready, or None; never waits.  Resets the wake flag first, so a wake
        after this is not lost for the wait that follows."""
        with self._lock:
            if self._closed:
                if self.stale:
                    return self.empty(poll, released=True, ticket=ticket)
                raise Expired()
            if ticket != self._ticket:
                return self.empty(poll, released=True, ticket=ticket)
            self._woken = False
            batch = self._pull(poll)
        if batch is not None:
            batch.ticket = ticket
        return batch

    def empty(self, poll: Poll, *, retry_ms: int | None = None, released: bool = False, ticket: int = 0,
              waited: bool = False) -> Batch:
        batch = Batch(READY, poll.asked, dropped=self._dropped(), retry_ms=retry_ms, released=released)
        batch.ticket = ticket
        batch.waited = waited
        return batch

    # -- waiting -------------------------------------------------------------------------

    def arm(self, ticket: int, wake: Callable[[], None]) -> bool:
        """Make ``wake`` the session's waiter; False (and no waiter) when a wake already came since the last
        take, or a newer poll began: take again at once."""
        with self._mutex:
            if self._woken or ticket != self._ticket:
                return False
            self._waiter = wake
            return True

    def disarm(self, wake: Callable[[], None]) -> None:
        with self._mutex:
            if self._waiter is wake:
                self._waiter = None

    def _wake(self) -> None:
        with self._mutex:
            self._woken = True
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()

    def release(self) -> None:
        """Answer a held poll at once, as a newer poll would (one that began in another process)."""
        with self._mutex:
            self._ticket += 1
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()

    # -- the cursor rules ---------------------------------------------------------------------

    def _acknowledge(self, cursor: str, keep: bool = False) -> Batch | None:
        """Apply the cursor rules; return a batch to re-send, or None to go on."""
        if self._closed:
            if self.stale:
                return Batch(READY, cursor, released=True)
            raise Expired()
        found = self._match(cursor)
        if found is None:  # the newest: what was sent arrived
            if not keep:
                self._sent = []
            if not self._sent:
                if self._finished:
                    self._close()
                    raise Expired("this session is done; start a new one")
                if self._failure is not None:
                    self._close()
                    raise self._failure
            return None
        n, gap = found
        if n < 0:  # ahead
            self._adopt(cursor)
            if self._finished:
                self._close()
                raise Expired("this session is done; start a new one")
            return None
        sent = self._sent[n]
        if not keep and not gap:  # a stream sending again keeps them until the client says
            del self._sent[:n]
        return Batch(sent.state, sent.cursor, sent.parts, self._dropped(), gap=gap or sent.gap)

    def _match(self, cursor: str) -> tuple[int, bool] | None:
        """Which rule a cursor falls under, changing nothing: None (the newest), (n, gap) to send the n-th
        batch kept again, _AHEAD (a batch this session signed that its store lost); else a 400."""
        if cursor == self._cursor:
            return None
        for n, sent in enumerate(self._sent):
            if cursor == sent.asked:  # its answer was lost: everything before it arrived
                return n, False
        number = batch_number(cursor)
        if number is not None and self._sent and number < self._let_go:
            # a stream sent past what it could keep, and the client got less: carry on from what is left
            return 0, True
        if number is not None and number > self._seq and self.nonce is not None \
                and cursor == sign(self.nonce, self.key, number, items_of(cursor) if self.replay else None):
            return _AHEAD
        raise BadParameter("cursor", "does not match this session; send the cursor of the last response")

    # -- the generator ---------------------------------------------------------------------------

    def _build(self) -> None:
        """(Re)build the iterator from the recipe, its feeds handed back in order."""
        assert self._start is not None
        self.feeds.restart()
        token = CURRENT.set(self.feeds)
        try:
            self._it = iter(self._start())
        finally:
            CURRENT.reset(token)

    def _pull(self, poll: Poll) -> Batch | None:
        """Advance the generator for up to max_items; None when nothing is ready."""
        parts: list[bytes] = []
        size = 0
        unavailable: LongPollError | None = None
        state = READY
        gap, self._gap = self._gap, False  # a gap the generator told of before, not yet sent
        since = signals.now()  # a signal first seen below but notified after this is looked at again
        token = CURRENT.set(self.feeds)
        try:
            while len(parts) < poll.max_items and size < poll.max_bytes:
                try:
                    if self._it is None:
                        self._build()
                    value = next(self._it)  # type: ignore[arg-type]
                except FeedWait:
                    if not isinstance(self._it, Source):  # a feed the function returned waits, and goes on after:
                        self._it = None  # a generator ended there, and the recipe builds it again once a feed has more
                    if self.feeds.mismatch is not None or self.feeds.own or self._start is None:
                        raise GeneratorFailed(self._unresumable()) from None
                    for feed in self.feeds.feeds:
                        if not any(w is feed.signal for w in self._watched):
                            self._watch(feed.signal)
                    if self.feeds.ready():
                        continue  # an item came meanwhile
                    unavailable = next((f.signal.error for f in self.feeds.feeds if f.signal.error), None)
                    break
                if value is GAP:
                    if parts:  # these came before the gap: send them, and the gap with the next batch
                        self._gap = True
                        break
                    gap = True
                    continue
                if isinstance(value, Signal):
                    if not any(w is value for w in self._watched):
                        self._watch(value)
                        if value.stamp > since:
                            continue  # notified while the generator ran: its data may be there
                    unavailable = value.error
                    break
                self.feeds.took()
                parts.append(self._encoded(poll.encode, value))
                size += len(parts[-1])
        except StopIteration:
            self._finished = True
            state = DONE
        except LongPollError as exc:
            self._failure = exc
        except Exception as exc:
            log.exception("session generator %s raised; ending its session", self._name())
            self._failure = GeneratorFailed(
                f"the session's generator raised {type(exc).__name__}; the session has ended")
        finally:
            CURRENT.reset(token)
        if self.feeds.gap:
            self.feeds.gap = False
            gap = True
        if self._failure is not None and not parts:
            self._close()
            raise self._failure
        if not parts and state is READY:
            self._gap = self._gap or gap  # nothing to carry it yet
            if unavailable is not None:
                raise unavailable
            return None
        self._seq += 1
        self._items += len(parts)
        self._cursor = self._cursor_of(self._seq)
        if not poll.keep:
            self._sent = []
        batch = Batch(state, self._cursor, tuple(parts), self._dropped(), fresh=True, gap=gap)
        self._sent.append(Sent.of(poll.asked, batch))
        while len(self._sent) > 1 and (sum(len(sent.parts) for sent in self._sent) > MAX_UNACKNOWLEDGED
                                       or sum(sent.size for sent in self._sent) > MAX_UNACKNOWLEDGED_BYTES):
            self._let_go = batch_number(self._sent.pop(0).cursor) or 0
        return batch

    def _unresumable(self) -> str:
        if self.feeds.mismatch is not None:
            return f"the session's generator cannot be resumed: {self.feeds.mismatch}; the session has ended"
        return ("the session's generator waits on a feed inside its own code but also yields items of its own, "
                "so it cannot be resumed; yield only items drawn from feeds, or use broker.subscribe() for a "
                "generator with state of its own; the session has ended")

    def _name(self) -> str:
        if self.origin is not None:
            return str(self.origin.get("endpoint"))
        return str(getattr(self._start, "__qualname__", None) or getattr(self._it, "__name__", repr(self._it)))

    def _encoded(self, encode: Encode, value: Any) -> bytes:
        """An item's JSON as the session keeps it until acknowledged: the log's own bytes for an item from
        the log (shared by every session that sends it), else bytes of its own length."""
        if type(value) is Item:
            return value.raw
        try:
            return encoding.exact(encode(value))
        except Exception as exc:
            log.warning("session generator %s yielded an item that cannot be sent (%s); ending its session",
                        self._name(), exc)
            raise GeneratorFailed(f"the session's generator yielded an item that cannot be encoded ({exc}); "
                                  "the session has ended") from None

    def _watch(self, signal: Signal) -> None:
        signal.add_waiter(self._wake)
        watched = (*self._watched, signal)
        if len(watched) > MAX_WATCHED:  # a generator making a new signal per wait
            watched[0].remove_waiter(self._wake)
            watched = watched[1:]
        self._watched = watched

    def _dropped(self) -> int:
        """Items lost to full buffers: the feeds', and those of the other signals the generator waits on."""
        feeds = [feed.signal for feed in self.feeds.feeds]
        return self.feeds.dropped() + sum(getattr(w, "dropped", 0) for w in self._watched
                                         if not any(w is s for s in feeds))

    # -- the end -----------------------------------------------------------------------------------

    def close(self) -> None:
        """End the session: close the generator (its ``finally`` runs) and release a held poll."""
        with self._lock:
            self._close()
        self._wake()

    def drop(self) -> None:
        """Let this copy go, the session living on elsewhere: a poll held on it answers as released."""
        with self._lock:
            self.stale = True
            self._close()
        self.release()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for signal in self._watched:
            signal.remove_waiter(self._wake)
        self._watched = ()
        self._sent = []
        it, self._it = self._it, None
        close = getattr(it, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing session generator raised")
        self.feeds.close()


_AHEAD = (-1, True)


def _parts(items: Any) -> tuple[bytes, ...]:
    """A stored batch's items as the parts a live one holds (one part per item)."""
    return tuple(encoding.exact(encoding.dumps(item)) for item in items)
