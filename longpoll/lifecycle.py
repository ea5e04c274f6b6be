"""A session's life, from its first poll to its end, written once for every front and every transport.

A poll, whichever front parsed it and whatever transport frames its answer,
goes one way through here, as steps (``waits.py``):

1. **Which session.**  A first poll makes one (:meth:`Lifecycle.create`).  A
   poll with a key finds this process's live copy, or *takes the session
   over* from the session store: it reads the record, applies the session's
   own rules to the poll (the endpoint and identity it was made for, its
   cursor) and only then claims it (compare-and-set on the lease it read).
   So a live session and one rebuilt from the store answer alike, and a poll
   that is refused changes nothing: the real client carries on.
2. **Take.**  The poll is admitted against the session's poll rate, takes a
   batch, and waits while there is none (``session.py``).
3. **Settle.**  What a poll answers is stored before it is sent: a commit of
   the new batch (compare-and-set on the record's holder and batch number) or
   a touch.  Only the process that holds a session can commit to it, so a
   poll in a process that lost it can never overwrite what the newer one
   sent: it answers as released when it was the older poll (it had waited),
   and takes the session back over when it is the newer one (it answered at
   once, from a copy it did not know was old).
4. **End or hand over.**  A session that is done or failed deletes its
   record; a copy that went stale is only let go, never the session; when
   another process takes a session over, the release channel says so and a
   poll held here answers at once.

Durable sessions are those whose generator draws only from feeds of a
backend with a session store (Redis): the record is their recipe (endpoint,
the first poll's parameters, each feed's position) and what they sent that
the client has not acknowledged.  Keys say what kind of session they are
(``keys.KINDS``), so a process asked for a session another process keeps
to itself says so.

**When the store lost the record** (Redis restarted without its data), the
durable key itself rebuilds the session: it carries the first poll's
parameters and the epoch it was made in, sealed with the deployment's
secret (``keys.sealed``).  A key made in an earlier epoch, within as long as
its session could have lived after that epoch began (the record's lifetime
plus the longest hold), is rebuilt with its feeds at their logs' oldest
position, numbered on from the client's cursor, and its next batch says
``gap``; its cursor is checked by the same rules as a live session's (the
nonce is made again from the key).  Any other key whose record is gone is a
410: one of this epoch ended or expired, one too old could not be alive,
and one the secret did not seal (forged, changed, another endpoint's or
another identity's) opens nothing.

**Replayed sessions** (``json_yield(replay=True)``: a generator that is a
pure function of its parameters) get sealed keys too (``R``), and cursors
that say how many items were sent: a process without the session calls the
function again with the key's parameters and skips what the cursor says
the client has (``Session._adopt``, the rule for a cursor ahead of a copy).
They need no sticky routing; their secret is the session store's, else the
configured one (``longpoll.secret``); without either they stay local.

**Of two polls of one session on two processes, the newer wins**: a claim
stores when its poll began, and a poll that finds another process took its
session over reads that, and takes the session back only when it began
later; else it answers as released.

The record lives ``ttl`` (the idle timeout plus ``RECORD_MARGIN``) after a
poll; a poll about to wait longer than the record would live first extends
it for the wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from . import backends, keys, plugin
from .backends.base import DONE, GONE, Record, SessionStore
from .errors import BackendUnavailable, Expired, Forbidden, LongPollError, Stopping
from .feed import OLDEST
from .registry import DURABLE, LOCAL, REPLAY, Registry, canonical, quotas
from .session import Batch, Poll, Session, Start, batch_number
from .waits import Call, Steps, Wait

log = logging.getLogger("longpoll")

LOCAL_MESSAGE = ("this session is kept by the server process that made it, and this process does not hold it "
                 "(its generator keeps state of its own, so only that process can continue it); route each key to "
                 "the process its route names (longpoll.route), or run one process; start a new session")

RECORD_MARGIN = 5.0
"""Seconds a durable session's record outlives its idle timeout in the store (round trips, clocks)."""

CLAIMS = 5
"""Times a takeover reads and claims again when the record changed in between (each change is a poll that
another process answered meanwhile)."""

Rebuild = Callable[[dict[str, Any]], Start]
"""The recipe of a stored session's origin (its endpoint's function with the first poll's parameters)."""


def began() -> int:
    """When a poll began, in wall-clock microseconds: what decides which of two polls of a session is the
    newer.  Milliseconds were too coarse: a poll and the one that replaces it can begin within one."""
    return time.time_ns() // 1000


class Asked:
    """What a poll that names a key brings besides it: when it began, and what a session rebuilt for it
    counts against."""

    __slots__ = ("since", "hold", "owner", "address")

    def __init__(self, since: int = 0, hold: float = 0.0, owner: str | None = None,
                 address: Callable[[], str] | None = None):
        self.since = since or began()  # of two polls, the newer wins
        self.hold = hold  # the longest a poll of the endpoint may be held
        self.owner = owner
        self.address = address

    def quotas(self) -> tuple[tuple[str, str], ...]:
        """What a session rebuilt for this poll counts against (the address is read only now)."""
        return quotas(self.owner, self.address() if self.address is not None else None)


class Held:
    """One request's hold on a session: the session (live, or taken over), and what it was asked for as."""

    __slots__ = ("session", "tag", "ttl", "rebuild", "new", "admitted", "asked", "replay")

    def __init__(self, session: Session, tag: tuple[str, Any], ttl: float, rebuild: Rebuild, new: bool,
                 asked: Asked | None = None, replay: bool = False):
        self.session = session
        self.tag = tag  # (endpoint name, identity): a key works only for what it was made for
        self.ttl = ttl  # how long the store keeps the record after this poll
        self.rebuild = rebuild
        self.new = new
        self.admitted = False  # counted against the session's poll rate (once per request)
        self.asked = asked or Asked()
        self.replay = replay  # the endpoint's sessions may be rebuilt by replay (json_yield(replay=True))


class Lifecycle:
    """The one owner of the lives of one registry's sessions (see the module's docstring)."""

    def __init__(self, registry: Registry, stores: Callable[[], list[SessionStore]] | None = None):
        """``stores()``: where a key this process does not hold is looked up (default: every session store
        open in the process)."""
        self.registry = registry
        self.stores = stores if stores is not None else backends.stores
        self._listening: list[SessionStore] = []

    # -- which session ----------------------------------------------------------------

    def create(self, start: Start, tag: tuple[str, Any], ttl: float, rebuild: Rebuild, owner: str | None,
               address: str, origin: dict[str, Any] | None, replay: bool = False) -> Held:
        """A new session (its key is handed out with its first batch, once :meth:`settle` knows its kind)."""
        if self.registry.stopping:
            raise Stopping()  # a session made here now would be made in a process about to go
        session = self.registry.create(start, tag, owner, address, origin=origin)
        return Held(session, tag, ttl, rebuild, new=True, replay=replay)

    def find(self, key: str, tag: tuple[str, Any], ttl: float, rebuild: Rebuild,
             cursor: str | None, asked: Asked | None = None) -> Steps[Held]:
        """The session a poll of ``key`` continues: this process's copy, or one taken over from the store
        (or rebuilt from its key, when the store lost it)."""
        held = Held(None, tag, ttl, rebuild, new=False, asked=asked)  # type: ignore[arg-type]
        session = self.registry.get(key)
        if session is not None:
            check(session.tag, tag)
            if session.store is not None and session.ahead(cursor):  # another process answered since
                session = yield from self._take_over(key, held, cursor)
        elif key[:1] == REPLAY:
            session = yield from self._replayed(key, held, cursor)
        elif key[:1] != DURABLE:
            raise Expired(LOCAL_MESSAGE) if key[:1] == LOCAL and self.stores() else Expired()
        else:
            session = yield from self._take_over(key, held, cursor)
        held.session = session
        return held

    def _take_over(self, key: str, held: Held, cursor: str | None, newer: bool = False) -> Steps[Session]:
        """Read the stored session, check the poll against it, claim it, and build it here (unless this
        process's copy is the one stored after all).  ``newer``: only if this poll began after the one that
        took the session over last (else it answers as released: None)."""
        tag, ttl = held.tag, held.ttl
        for _ in range(CLAIMS):
            found = yield from self._read(key)
            if found is None:
                return (yield from self._rebuilt(key, held, cursor))
            store, record = found
            origin = self._checked(record, key, tag, cursor)
            if newer and record.since >= held.asked.since:
                return None  # type: ignore[return-value]  # the poll that has it now is the newer one (or began
                # in the same microsecond: the holder keeps it, so that one of the two does)
            lease = yield Call(store.claim, key, ttl + held.asked.hold, record, held.asked.since)
            if lease == GONE:
                raise Expired()
            if lease:
                break
        else:
            raise BackendUnavailable("this session is being polled elsewhere at the same moment; retry", 1)
        self._listen(store)
        local = self.registry.get(key)
        if local is not None and record.holder == store.me and local.stored == record.seq:
            local.lease = lease  # this process's copy is the one stored after all
            local.kept_until = time.monotonic() + ttl + held.asked.hold
            return local
        session = yield from self._built(key, held, store, origin, record.state["session"], record.state.get("tag"),
                                         record.state.get("owner"),
                                         tuple(tuple(q) for q in record.state.get("quotas", ())))
        session.lease = lease
        session.kept_until = time.monotonic() + ttl + held.asked.hold
        return session

    def _rebuilt(self, key: str, held: Held, cursor: str | None) -> Steps[Session]:
        """A durable session whose record the store lost, built again from its key (see the module's
        docstring), or Expired."""
        tag = held.tag
        identity = canonical(tag[1])
        for store in self.stores():
            secrets, epoch, began = yield Call(store.keying)
            secret, opened = next(((s, o) for s in secrets if (o := keys.opened(key, s, tag[0], identity))),
                                  (b"", None))
            if opened is None:
                continue
            made_in, origin = opened
            if made_in == epoch or began is None or time.time() > began + held.ttl + held.asked.hold:
                raise Expired()  # it ended or expired in this store's life, or it could not be alive any more
            state = {"seq": batch_number(cursor) or 0, "let_go": 0, "gap": True, "finished": False, "feeds": OLDEST,
                     "nonce": keys.nonce(secret, key).hex(), "sent": []}
            Session.check(state, key, cursor)
            self._listen(store)
            session = yield from self._built(key, held, store, origin, state, identity, held.asked.owner,
                                             held.asked.quotas())
            session.stored = -1  # no record: the first batch it answers makes one
            log.info("session %s… rebuilt from its key: the session store lost it", key[:6])
            return session
        raise Expired()

    def _replayed(self, key: str, held: Held, cursor: str | None) -> Steps[Session]:
        """A replayed session this process does not hold, built from its key: at its start, the client's
        cursor then being ahead of it (the session's own rule skips what the client has)."""
        tag = held.tag
        identity = canonical(tag[1])
        for secret in (yield from self._secrets()):
            opened = keys.opened(key, secret, tag[0], identity)
            if opened is not None:
                break
        else:
            raise Expired()
        _, origin = opened
        try:
            session = Session(key, held.rebuild(origin), (tag[0], identity), held.asked.owner, held.asked.quotas(),
                              origin=origin)
        except LongPollError:
            raise
        except Exception:
            log.exception("replaying session %s… raised", key[:6])
            raise Expired("this session could not be resumed here; start a new one") from None
        session.sign(keys.nonce(secret, key), Batch("ready", "0"), replay=True)
        self.registry.adopt(session)
        return session

    def _secrets(self) -> Steps[tuple[bytes, ...]]:
        """What seals replayed keys: the session store's secrets, else the configured one, else none."""
        for store in self.stores():
            secrets, _, _ = yield Call(store.keying)
            return secrets
        configured = keys.configured_secret()
        return () if configured is None else (configured,)

    def _built(self, key: str, held: Held, store: SessionStore, origin: dict[str, Any], state: dict[str, Any],
               identity: Any, owner: str | None, quotas: tuple[tuple[str, str], ...]) -> Steps[Session]:
        try:
            session = Session.restore(key, held.rebuild(origin), state, tag=(held.tag[0], identity), owner=owner,
                                      quotas=quotas, origin=origin)
        except BackendUnavailable:
            raise  # passing: the next poll tries again
        except (LongPollError, Exception) as exc:
            # A state this version cannot build (parameters it refuses now, a function that changed) would fail
            # the same way on every retry while each takeover kept it alive: end it, and the client starts anew.
            log.warning("session %s… could not be resumed (%s: %s); ending it", key[:6], type(exc).__name__, exc)
            yield Call(store.delete, key)
            raise Expired("this session could not be resumed here; start a new one") from None
        session.store = store
        self.registry.adopt(session)
        return session

    def _read(self, key: str) -> Steps[tuple[SessionStore, Record] | None]:
        for store in self.stores():
            record = yield Call(store.read, key)
            if record is not None:
                return store, record
        return None

    @staticmethod
    def _checked(record: Record, key: str, tag: tuple[str, Any], cursor: str | None) -> dict[str, Any]:
        """The rules a live session applies to a poll, applied to its record: the record's origin."""
        origin: dict[str, Any] = record.state.get("origin") or {}
        if origin.get("endpoint") != tag[0]:
            raise Forbidden("this session key was made for another endpoint")
        if record.local or record.state.get("local"):
            raise Expired(LOCAL_MESSAGE)
        if record.state.get("tag") != canonical(tag[1]):
            raise Forbidden("this session key was made for another identifier or resource")
        Session.check(record.state["session"], key, cursor)
        return origin

    # -- one poll ----------------------------------------------------------------------------

    def take(self, held: Held, poll: Poll, *, again: bool = True, admit: bool = True) -> Steps[Batch]:
        """The poll's batch, stored before it is sent.  With ``again``, a poll that finds this process's copy
        was old, and is the newer poll, takes the session over and polls once more; without, it answers as
        released (a stream ends there).  ``admit``: counted against the session's poll rate (a stream
        counts once, at its start)."""
        if admit and not held.admitted:
            held.admitted = True
            self.registry.admit(held.session)
        settled = yield from self.settle(held, (yield from self._polled(held, poll)), poll)
        if settled is None and again:
            taken = yield from self._take_over(held.session.key, held, poll.cursor, newer=True)
            if taken is not None:
                held.session = taken
                settled = yield from self.settle(held, (yield from self._polled(held, poll)), poll)
        batch = settled or held.session.empty(poll, released=True)
        if self.registry.stopping and (batch.released or not batch.count):
            raise Stopping()  # held polls answer now, and nothing waits here any more: resume elsewhere
        return batch

    def _polled(self, held: Held, poll: Poll) -> Steps[Batch]:
        session = held.session
        try:
            steps = session.steps(poll)
            batch = yield from (steps if session.store is None else self._kept(held, steps))
        except BaseException as exc:
            self.registry.polled(session, None)
            if isinstance(exc, LongPollError):
                yield from self._ended(session)
            raise
        self.registry.polled(session, batch, streamed=poll.streamed)
        return batch

    def _kept(self, held: Held, steps: Any) -> Steps[Batch]:
        """A poll's steps, its session's record extended before the poll waits longer than it would live."""
        sent: Any = None
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        while True:
            session = held.session
            if isinstance(step, Wait) and step.deadline + 1 > session.kept_until and session.store is not None:
                ttl = held.ttl + max(0.0, step.deadline - time.monotonic())
                try:
                    code = yield Call(session.store.touch, session.key, ttl, batch=session.store.writes)
                except BackendUnavailable:
                    code = None  # the poll's end stores it, or says so
                if code == DONE:
                    session.kept_until = time.monotonic() + ttl
            try:
                sent = yield step
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:
                try:
                    step = steps.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                step = steps.send(sent)
            except StopIteration as stop:
                return stop.value

    def settle(self, held: Held, batch: Batch, poll: Poll) -> Steps[Batch | None]:
        """Store what a poll answered before it is sent (a new session's key is named first): the batch to
        send, or None when this process lost the session and the poll, being the newer one, must take it over
        and poll again.  On an event loop, the commits of every poll answered in one moment (one publish
        releasing thousands) go to the store as one round trip."""
        session = held.session
        if held.new:
            held.new = False
            yield from self._introduce(session, batch, held.replay)
        store = session.store
        if store is None:
            return batch
        seq = session.seq  # before the state, which is then at least as new as the number it is stored under
        state = self.record(session)
        if session.stored != seq or state.get("local"):  # a batch the store lacks (one whose commit failed,
            # Redis being away, is sent again now: it must be stored before the client has it)
            code = yield Call(store.commit, session.key, session.stored, seq, state, held.ttl, session.lease,
                              batch=store.writes)
        else:
            code = yield Call(store.touch, session.key, held.ttl, batch=store.writes)
        if code == GONE and store.lost_since(session.born):
            # Redis lost its data while this process held the session: carry on from here, stored again, and
            # say that items may be missing (what was in the log and not yet read here is gone).
            batch.gap = True
            code = yield Call(store.commit, session.key, -1, seq, state, held.ttl, session.lease, batch=store.writes)
        if code == DONE:
            session.stored = max(session.stored, seq)
            session.kept_until = max(session.kept_until, time.monotonic() + held.ttl)
            return batch
        self.registry.discard(session)
        if code == GONE:
            raise Expired()  # it ended elsewhere, or expired
        return None  # another process took it over: the newer of the two polls has it (take)

    def _introduce(self, session: Session, batch: Batch, replay: bool = False) -> Steps[None]:
        """A new session is about to hand out its key: durable when its recipe's feeds are on a store (and
        then sealed, so that it can be rebuilt if the store loses it)."""
        store = self._store_of(session)
        if store is None:
            sealed = None
            secrets = (yield from self._secrets()) if replay and session.origin is not None else ()
            if secrets:
                secret = secrets[0]
                sealed = keys.sealed(session.key, secret, bytes(keys.EPOCH_BYTES), session.tag[0], session.tag[1],
                                     session.origin or {}, REPLAY)
            self.registry.mark(session, LOCAL if sealed is None else REPLAY, sealed)
            if sealed is not None:
                session.sign(keys.nonce(secret, session.key), batch, replay=True)
            return
        secrets, epoch, _ = yield Call(store.keying)
        secret = secrets[0]
        self.registry.mark(session, DURABLE, keys.sealed(session.key, secret, epoch, session.tag[0], session.tag[1],
                                                         session.origin or {}))
        session.store = store
        session.sign(keys.nonce(secret, session.key), batch)
        self._listen(store)

    def _ended(self, session: Session) -> Steps[None]:
        """A poll found its session over (done and acknowledged, or failed): its record goes too."""
        if session.store is not None and session.closed and not session.stale:
            try:
                yield Call(session.store.delete, session.key)
            except BackendUnavailable:
                pass  # it expires on its own

    @staticmethod
    def record(session: Session) -> dict[str, Any]:
        """What the store keeps of a session."""
        origin = session.origin or {}
        if not session.recipe():
            return {"local": True, "origin": {"endpoint": origin.get("endpoint")}}
        return {"origin": origin, "tag": session.tag[1] if isinstance(session.tag, (list, tuple)) else None,
                "owner": session.owner, "quotas": [list(q) for q in session.quotas], "session": session.checkpoint()}

    # -- other processes ---------------------------------------------------------------------

    def _store_of(self, session: Session) -> SessionStore | None:
        if not session.recipe():
            return None
        stores = {id(feed.store): feed.store for feed in session.feeds.feeds}
        return next(iter(stores.values())) if len(stores) == 1 else None

    def _listen(self, store: SessionStore) -> None:
        if not any(s is store for s in self._listening):
            self._listening.append(store)
            store.on_release(self._released)
            plugin.attach(store.listener)

    def _released(self, key: str, lease: int, since: int = 0) -> None:
        """Another process took a session over: a poll held on this copy answers, and the copy goes."""
        session = self.registry.get(key)
        if session is not None and session.store is not None and session.lease < lease:
            self.registry.discard(session)


def check(have: Any, wanted: tuple[str, Any]) -> None:
    """A key works only for the endpoint and the identity (``bind=``) it was made for."""
    if have[0] != wanted[0]:
        raise Forbidden("this session key was made for another endpoint")
    if have[1] != canonical(wanted[1]):
        raise Forbidden("this session key was made for another identifier or resource")
