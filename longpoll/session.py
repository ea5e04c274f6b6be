"""One client's server-held generator, cut into batches by its polls.

The session owns the cursor rules of PROTOCOL.md: a poll with the newest
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

Waiting uses a second, tiny lock (``_mutex``) and one waiter per session:
a producer waking the session never blocks behind a generator that is busy
computing, and only one poll of a session waits at a time (a newer one
releases it first).  The waiter is a callable: under threads it releases a
parked lock, on an event loop it resolves a future.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from . import encoding, signals
from .errors import BadParameter, Expired, GeneratorFailed, LongPollError
from .feed import CURRENT, FeedWait, Recorder
from .gate import HoldGate
from .signals import GAP, Signal
from .wake import waker

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

NOTHING = b"[]"


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

    @property
    def asked(self) -> str:
        return "0" if self.cursor is None else self.cursor

    def at_once(self) -> Poll:
        """This poll, not waiting (every poll on an event loop first looks so: ``dataclasses.replace`` costs
        several times this)."""
        return Poll(self.cursor, 0.0, self.max_items, self.encode, self.gate, self.placed, self.keep, self.follow,
                    self.before_wait, self.max_bytes)


class Batch:
    """What one poll answers; ``raw`` is the items as one JSON array."""

    __slots__ = ("state", "cursor", "raw", "count", "dropped", "retry_ms", "fresh", "gap", "released", "ticket",
                 "waited")

    def __init__(self, state: str, cursor: str, raw: bytes = NOTHING, count: int = 0, dropped: int = 0,
                 retry_ms: int | None = None, fresh: bool = False, gap: bool = False, released: bool = False):
        self.state = state
        self.cursor = cursor
        self.raw = raw
        self.count = count
        self.dropped = dropped
        self.retry_ms = retry_ms
        self.fresh = fresh  # False for a re-sent or empty batch: nothing newly delivered
        self.gap = gap  # items before these were lost: the client may re-fetch what it needs
        self.released = released  # a newer poll of the session took over
        self.ticket = 0  # the poll's number on its session: a stream's next poll goes on with it
        self.waited = False  # the poll was held before it answered

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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Sent(NamedTuple):
    """A batch sent and not yet acknowledged."""

    asked: str  # the cursor it was asked with
    cursor: str
    raw: bytes
    size: int  # items in it (not ``count``, which is tuple's method)
    state: str
    gap: bool


Start = Callable[[], Any]
"""Builds the session's iterator (its endpoint's function, called with the first poll's parameters)."""


class Session:
    __slots__ = (
        "key", "tag", "owner", "quotas", "origin", "born", "last_seen", "served", "_allowance", "_checked",
        "_start", "_rec", "_it", "_lock", "_mutex", "_waiter", "_woken", "_ticket", "_inflight", "_watched",
        "_seq", "_cursor", "_sent", "_let_go", "_gap", "_closed", "_dropped_copy", "_finished", "_failure",
        "store", "stored", "lease", "__weakref__",
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
        self._rec = recorder if recorder is not None else Recorder()
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
        self._dropped_copy = False  # closed as a stale copy: the session lives on elsewhere
        self._finished = False
        self._failure: LongPollError | None = None
        self.store: Any = None  # the session store that keeps it (durable.py), if any
        self.stored = -1  # the batch number the session store holds (-1: not stored)
        self.lease = 0  # the store's count of takeovers when this process took it over
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
    def stale(self) -> bool:
        """Closed as a copy that went stale: the session itself lives on elsewhere."""
        return self._dropped_copy

    @property
    def seq(self) -> int:
        """The number of the last batch sent."""
        return self._seq

    @property
    def feeds(self) -> Recorder:
        return self._rec

    def recipe(self) -> bool:
        """Whether the session can be built again from its origin and its feeds' positions."""
        return self._start is not None and self.origin is not None and bool(self._rec.feeds) \
            and not self._rec.own and self._rec.mismatch is None

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
        return {"seq": self._seq, "let_go": self._let_go, "gap": self._gap or self._rec.gap,
                "finished": self._finished, "feeds": self._rec.checkpoints(),
                "sent": [[s.asked, s.cursor, orjson.Fragment(s.raw), s.size, s.state, s.gap] for s in self._sent]}

    @classmethod
    def restore(cls, key: str, start: Start, state: dict[str, Any], *, tag: Any, owner: str | None,
                quotas: tuple[tuple[str, str], ...], origin: dict[str, Any]) -> Session:
        """A session built again from a checkpoint, at the same batch and cursors."""
        session = cls(key, start, tag, owner, quotas, recorder=Recorder(resume=state["feeds"]), origin=origin)
        session._seq = session.stored = state["seq"]
        session._cursor = str(state["seq"])
        session._sent = [Sent(asked, cursor, encoding.exact(orjson.dumps(items)), count, st, gap)
                         for asked, cursor, items, count, st, gap in state["sent"]]
        session._let_go = state["let_go"]
        session._gap = state["gap"]
        session._finished = state["finished"]
        return session

    def adopt(self, cursor: str) -> None:
        """The client holds a batch newer than any this session knows (its backend lost the last writes):
        carry on from here, numbering after the client's, and say that items may be missing or repeated."""
        with self._lock:
            self._seq = int(cursor)
            self._cursor = cursor
            self._sent = []
            self._gap = True

    # -- polls ---------------------------------------------------------------------------

    def poll(self, poll: Poll) -> Batch:
        """The next batch, waiting on this thread while there is none (up to ``poll.timeout``)."""
        ticket = self.begin(poll)
        try:
            batch = self._poll(ticket, poll)
            batch.ticket = ticket
            return batch
        finally:
            self.end()

    def _poll(self, ticket: int, poll: Poll) -> Batch:
        batch = self.first(ticket, poll)
        if batch is not None:
            return batch
        deadline = time.monotonic() + poll.timeout
        holding = False
        try:
            while True:
                batch = self.take(ticket, poll)
                if batch is not None:
                    batch.waited = holding
                    return batch
                if time.monotonic() >= deadline or (poll.gate is not None and poll.gate.closed):
                    return self.empty(poll, waited=holding)
                if not holding:
                    if poll.gate is not None and not poll.placed and not poll.gate.enter():
                        return self.empty(poll, retry_ms=RETRY_MS_WHEN_FULL)
                    holding = True
                    if poll.before_wait is not None:
                        poll.before_wait()
                self._park(ticket, deadline)
        finally:
            if holding and poll.gate is not None and not poll.placed:
                poll.gate.leave()

    async def poll_async(self, poll: Poll) -> Batch:
        """The next batch, waiting on the running event loop while there is none: the waiting poll is a
        future the session's wake resolves (from the hub's thread), with no thread or task of its own."""
        loop = asyncio.get_running_loop()
        wakes = waker(loop)
        ticket = self.begin(poll)
        holding = False
        try:
            batch = self.first(ticket, poll) or self.take(ticket, poll)
            deadline = time.monotonic() + poll.timeout
            while batch is None:
                left = deadline - time.monotonic()
                if left <= 0 or (poll.gate is not None and poll.gate.closed):
                    batch = self.empty(poll, waited=holding)
                    break
                if not holding:
                    if poll.gate is not None and not poll.placed and not poll.gate.enter():
                        batch = self.empty(poll, retry_ms=RETRY_MS_WHEN_FULL)
                        break
                    holding = True
                future: asyncio.Future[None] = loop.create_future()
                wake = wakes.waking(future)
                if self.arm(ticket, wake):
                    timer = loop.call_later(left, _resolve, future)
                    try:
                        await future
                    finally:
                        timer.cancel()
                        self.disarm(wake)
                batch = self.take(ticket, poll)
                if batch is not None:
                    batch.waited = holding
            batch.ticket = ticket
            return batch
        finally:
            if holding and poll.gate is not None and not poll.placed:
                poll.gate.leave()
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
                if self._dropped_copy:
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

    def _park(self, ticket: int, deadline: float) -> None:
        """Wait on this thread until woken, released by a newer poll, or the deadline."""
        parked = threading.Lock()
        parked.acquire()
        if not self.arm(ticket, parked.release):
            return
        parked.acquire(True, max(0.0, deadline - time.monotonic()))
        self.disarm(parked.release)

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
            if self._dropped_copy:
                return Batch(READY, cursor, released=True)
            raise Expired()
        if cursor == self._cursor:
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
        for n, sent in enumerate(self._sent):
            if cursor == sent.asked:  # its answer was lost: everything before it arrived
                if not keep:  # a stream sending again keeps them until the client says
                    del self._sent[:n]
                return self._resend(sent)
        if self._sent and cursor.isdigit() and int(cursor) < self._let_go:
            # a stream sent past what it could keep, and the client got less: carry on from what is left
            return self._resend(self._sent[0], gap=True)
        raise BadParameter("cursor", "does not match this session; send the cursor of the last response")

    def ahead(self, cursor: str | None) -> bool:
        """Whether a client's cursor names a batch after the newest this copy has sent."""
        return cursor is not None and cursor.isdigit() and int(cursor) > self._seq

    def _resend(self, sent: Sent, gap: bool = False) -> Batch:
        return Batch(sent.state, sent.cursor, sent.raw, sent.size, self._dropped(), gap=gap or sent.gap)

    # -- the generator ---------------------------------------------------------------------------

    def _build(self) -> None:
        """(Re)build the iterator from the recipe, its feeds handed back in order."""
        assert self._start is not None
        self._rec.restart()
        token = CURRENT.set(self._rec)
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
        token = CURRENT.set(self._rec)
        try:
            while len(parts) < poll.max_items and size < poll.max_bytes:
                try:
                    if self._it is None:
                        self._build()
                    value = next(self._it)  # type: ignore[arg-type]
                except FeedWait:
                    self._it = None  # the generator ended there: the recipe builds it again once a feed has more
                    if self._rec.mismatch is not None or self._rec.own or self._start is None:
                        raise GeneratorFailed(self._unresumable()) from None
                    for feed in self._rec.feeds:
                        if not any(w is feed.signal for w in self._watched):
                            self._watch(feed.signal)
                    if self._rec.ready():
                        continue  # an item came meanwhile
                    unavailable = next((f.signal.error for f in self._rec.feeds if f.signal.error), None)
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
                self._rec.took()
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
        if self._rec.gap:
            self._rec.gap = False
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
        self._cursor = str(self._seq)
        if not poll.keep:
            self._sent = []
        raw = encoding.join(parts)
        self._sent.append(Sent(poll.asked, self._cursor, raw, len(parts), state, gap))
        while len(self._sent) > 1 and (sum(sent.size for sent in self._sent) > MAX_UNACKNOWLEDGED
                                       or sum(len(sent.raw) for sent in self._sent) > MAX_UNACKNOWLEDGED_BYTES):
            self._let_go = int(self._sent.pop(0).cursor)
        return Batch(state, self._cursor, raw, len(parts), self._dropped(), fresh=True, gap=gap)

    def _unresumable(self) -> str:
        if self._rec.mismatch is not None:
            return f"the session's generator cannot be resumed: {self._rec.mismatch}; the session has ended"
        return ("the session's generator waits on a feed inside its own code but also yields items of its own, "
                "so it cannot be resumed; yield only items drawn from feeds, or use broker.subscribe() for a "
                "generator with state of its own; the session has ended")

    def _name(self) -> str:
        if self.origin is not None:
            return str(self.origin.get("endpoint"))
        return str(getattr(self._start, "__qualname__", None) or getattr(self._it, "__name__", repr(self._it)))

    def _encoded(self, encode: Encode, value: Any) -> bytes:
        try:
            return encode(value)
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
        feeds = [feed.signal for feed in self._rec.feeds]
        return self._rec.dropped() + sum(getattr(w, "dropped", 0) for w in self._watched
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
            self._dropped_copy = True
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
        self._rec.close()
