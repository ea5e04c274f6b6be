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
:data:`~longpoll.signals.GAP`: its source lost items, a trimmed log say).

Waiting uses a second, tiny lock (``_mutex``) and one parked lock per
waiting poll, so that a producer waking the session never blocks behind a
generator that is busy computing.  Only one poll of a session waits at a time
(a newer one releases it first), so one parking place is all it takes; a
Condition and its waiter queue cost each of 10,000 held sessions a kilobyte.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .errors import BadParameter, Expired, GeneratorFailed, LongPollError
from .gate import HoldGate
from .signals import GAP, Signal

log = logging.getLogger("longpoll")

READY = "ready"
DONE = "done"

MAX_WATCHED = 8
"""Signals a session stays registered with; older ones are let go."""

Encode = Callable[[Any], Any]
"""Turns an item into what is sent; raises for an item that cannot be sent."""

MAX_UNACKNOWLEDGED = 1000
"""Items a stream's sent batches may hold before the oldest are let go (a reconnect behind them is a gap)."""

RETRY_MS_WHEN_FULL = 1000
"""What a poll turned away by the hold gate tells the client to wait."""


class Batch:
    """What one poll answers."""

    __slots__ = ("state", "cursor", "items", "dropped", "retry_ms", "fresh", "snapshot", "gap", "released", "ticket")

    def __init__(self, state: str, cursor: str, items: list, dropped: int = 0,
                 retry_ms: int | None = None, fresh: bool = False, snapshot: dict[str, Any] | None = None,
                 gap: bool = False, released: bool = False):
        self.state = state
        self.cursor = cursor
        self.items = items
        self.dropped = dropped
        self.retry_ms = retry_ms
        self.fresh = fresh  # False for a re-sent or empty batch: nothing newly delivered
        self.snapshot = snapshot  # a durable session's state as of this batch, to store
        self.gap = gap  # items before these were lost: the client may re-fetch what it needs
        self.released = released  # a newer poll of the session took over
        self.ticket = 0  # the poll's number on its session: a stream's next poll goes on with it

    def to_json(self, key: str) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state, "key": key, "cursor": self.cursor, "items": self.items}
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
    items: list
    state: str
    gap: bool


class Session:
    __slots__ = (
        "key", "tag", "owner", "quotas", "born", "last_seen", "served", "_allowance", "_checked", "_it", "_lock",
        "_mutex", "_parked", "_woken", "_ticket", "_inflight", "_watched", "_seq", "_cursor", "_sent", "_let_go",
        "_gap", "_closed", "_finished", "_failure", "_position",
    )

    def __init__(self, key: str, iterator: Iterator[Any], tag: Any = None, owner: str | None = None,
                 quotas: tuple[tuple[str, str], ...] = ()):
        self.key = key
        self.tag = tag  # what the session was created for (checked on later polls)
        self.owner = owner  # the client identity it counts against (sessions per identifier)
        self.quotas = quotas  # the registry's caps it counts against: ("owner", id), ("address", ip)
        self.born = self.last_seen = time.monotonic()
        self.served = 0  # polls that have ended
        self._allowance = -1.0  # poll tokens; filled on the first admit()
        self._checked = self.last_seen
        self._it = iterator
        self._lock = threading.Lock()  # the generator and the batch state
        self._mutex = threading.Lock()  # the poll numbers, and parking and waking held polls
        self._parked: Any = None  # the lock a waiting poll is parked on, released to wake it
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
        self._finished = False
        self._failure: LongPollError | None = None
        self._position = getattr(iterator, "position", None)  # the iterator's, as of the last batch

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def seq(self) -> int:
        """The number of the last batch sent."""
        return self._seq

    @property
    def durable(self) -> bool:
        """Whether the iterator can be rebuilt elsewhere (it has a ``definition``)."""
        return getattr(self._it, "definition", None) is not None

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

    def snapshot(self) -> dict[str, Any]:
        """What a session store keeps to rebuild this session in another process."""
        return {"seq": self._seq, "sent": [list(sent) for sent in self._sent], "let_go": self._let_go,
                "position": self._position, "definition": getattr(self._it, "definition", None),
                "tag": list(self.tag) if isinstance(self.tag, tuple) else self.tag, "owner": self.owner,
                "quotas": [list(q) for q in self.quotas]}

    @classmethod
    def restore(cls, key: str, iterator: Iterator[Any], state: dict[str, Any]) -> Session:
        """A session rebuilt from a snapshot, at the same batch and cursors."""
        tag = state["tag"]
        quotas = tuple(tuple(q) for q in state.get("quotas", ()))
        session = cls(key, iterator, tuple(tag) if isinstance(tag, list) else tag, state.get("owner"), quotas)
        session._seq = state["seq"]
        session._cursor = str(state["seq"])
        session._sent = [Sent(*sent) for sent in state.get("sent", ())]
        session._let_go = state.get("let_go", 0)
        session._position = state["position"]
        return session

    def idle_since(self, now: float) -> float | None:
        """Seconds since the last poll ended; None while a poll is in flight."""
        return None if self._inflight else now - self.last_seen

    def poll(self, cursor: str | None, timeout: float, max_items: int, gate: HoldGate | None = None,
             encode: Encode | None = None, keep: bool = False, follow: int | None = None) -> Batch:
        """The next batch.  ``encode`` turns each item into what is sent (JSON, say) as it is taken;
        an item it refuses ends the session as the generator raising would, after the items before it.
        ``keep``: a stream's poll, which sends on without the client's acknowledgement, so the newest
        cursor does not acknowledge the batches sent before it.  ``follow``: the ticket of the stream's
        previous poll (``Batch.ticket``); the stream goes on as that poll, and is released if a newer poll
        began in between, instead of taking a newer ticket and so winning over that poll."""
        with self._mutex:
            if follow is not None and follow != self._ticket:
                return Batch(READY, "0" if cursor is None else cursor, [], released=True)
            if follow is None:
                self._ticket += 1
            ticket = self._ticket
            self._inflight += 1
            parked, self._parked = self._parked, None
        if parked is not None:
            parked.release()  # an older poll on this key answers now
        try:
            batch = self._poll(ticket, "0" if cursor is None else cursor, timeout, max_items, gate, encode, keep)
            batch.ticket = ticket
            return batch
        finally:
            with self._mutex:
                self._inflight -= 1
                self.served += 1
                self.last_seen = time.monotonic()

    def mark_gap(self) -> None:
        """Items may be missing from here on (its backend lost data): the next batch says so."""
        with self._lock:
            self._gap = True

    def release(self) -> None:
        """Answer a held poll at once, as a newer poll would (one that began in another process)."""
        with self._mutex:
            self._ticket += 1
        self._wake()

    def _poll(self, ticket: int, cursor: str, timeout: float, max_items: int, gate: HoldGate | None,
              encode: Encode | None, keep: bool) -> Batch:
        deadline = time.monotonic() + timeout
        with self._lock:
            resent = self._acknowledge(cursor, keep)
            if resent is not None:
                return resent
        holding = False
        try:
            while True:
                with self._lock:
                    if self._closed:
                        raise Expired()
                    if ticket != self._ticket:
                        return self._empty(cursor, released=True)
                    self._woken = False
                    batch = self._pull(cursor, max_items, encode, keep)
                    if batch is not None:
                        return batch
                if time.monotonic() >= deadline:
                    return self._empty(cursor)
                if not holding:
                    if gate is not None and not gate.enter():
                        return self._empty(cursor, retry_ms=RETRY_MS_WHEN_FULL)
                    holding = True
                self._park(ticket, deadline)
        finally:
            if holding and gate is not None:
                gate.leave()

    def _acknowledge(self, cursor: str, keep: bool = False) -> Batch | None:
        """Apply the cursor rules; return a batch to re-send, or None to go on."""
        if self._closed:
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

    def _resend(self, sent: Sent, gap: bool = False) -> Batch:
        return Batch(sent.state, sent.cursor, sent.items, self._dropped(), gap=gap or sent.gap)

    def _pull(self, cursor: str, max_items: int, encode: Encode | None = None, keep: bool = False) -> Batch | None:
        """Advance the generator for up to max_items; None when nothing is ready."""
        items: list = []
        unavailable: LongPollError | None = None
        state = READY
        looked_again = False
        gap, self._gap = self._gap, False  # a gap the generator told of before, not yet sent
        try:
            while len(items) < max_items:
                value = next(self._it)
                if value is GAP:
                    if items:  # these came before the gap: send them, and the gap with the next batch
                        self._gap = True
                        break
                    gap = True
                    continue
                if not isinstance(value, Signal):
                    items.append(value if encode is None else self._encoded(encode, value))
                    continue
                if not any(w is value for w in self._watched):
                    self._watch(value)
                    if not looked_again:
                        # First sight: look again, since data may have arrived
                        # between the generator's check and the registration.
                        looked_again = True
                        continue
                unavailable = value.error
                break
        except StopIteration:
            self._finished = True
            state = DONE
        except LongPollError as exc:
            self._failure = exc
        except Exception as exc:
            log.exception("session generator %s raised; ending its session", getattr(self._it, "__name__", self._it))
            self._failure = GeneratorFailed(
                f"the session's generator raised {type(exc).__name__}; the session has ended")
        if self._failure is not None and not items:
            self._close()
            raise self._failure
        if not items and state is READY:
            self._gap = self._gap or gap  # nothing to carry it yet
            if unavailable is not None:
                raise unavailable
            return None
        self._seq += 1
        self._cursor = str(self._seq)
        if not keep:
            self._sent = []
        self._sent.append(Sent(cursor, self._cursor, items, state, gap))
        while len(self._sent) > 1 and sum(len(sent.items) for sent in self._sent) > MAX_UNACKNOWLEDGED:
            self._let_go = int(self._sent.pop(0).cursor)
        self._position = getattr(self._it, "position", None)
        return Batch(state, self._cursor, items, self._dropped(), fresh=True,
                     snapshot=self.snapshot() if self.durable else None, gap=gap)

    def _encoded(self, encode: Encode, value: Any) -> Any:
        try:
            return encode(value)
        except Exception as exc:
            log.warning("session generator %s yielded an item that cannot be sent (%s); ending its session",
                        getattr(self._it, "__name__", self._it), exc)
            raise GeneratorFailed(f"the session's generator yielded an item that cannot be encoded "
                                  f"({type(value).__name__}); the session has ended") from None

    def _watch(self, signal: Signal) -> None:
        signal.add_waiter(self._wake)
        watched = (*self._watched, signal)
        if len(watched) > MAX_WATCHED:  # a generator making a new signal per wait
            watched[0].remove_waiter(self._wake)
            watched = watched[1:]
        self._watched = watched

    def _empty(self, cursor: str, retry_ms: int | None = None, released: bool = False) -> Batch:
        return Batch(READY, cursor, [], self._dropped(), retry_ms, released=released)

    def _dropped(self) -> int:
        return sum(getattr(w, "dropped", 0) for w in self._watched)

    def _park(self, ticket: int, deadline: float) -> None:
        """Wait until woken, released by a newer poll, or the deadline."""
        with self._mutex:
            if self._woken or ticket != self._ticket:
                return
            parked = self._parked = threading.Lock()
            parked.acquire()
        parked.acquire(True, max(0.0, deadline - time.monotonic()))
        with self._mutex:
            if self._parked is parked:
                self._parked = None

    def _wake(self) -> None:
        with self._mutex:
            self._woken = True
            parked, self._parked = self._parked, None
        if parked is not None:
            parked.release()

    def close(self) -> None:
        """End the session: close the generator (its ``finally`` runs) and release a held poll."""
        with self._lock:
            self._close()
        self._wake()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for signal in self._watched:
            signal.remove_waiter(self._wake)
        self._watched = ()
        self._sent = []
        close = getattr(self._it, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing session generator raised")
