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
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from . import backends, plugin
from .backends.base import DONE, GONE, Record, SessionStore
from .errors import BackendUnavailable, Expired, Forbidden, LongPollError, Stopping
from .registry import DURABLE, LOCAL, Registry, canonical
from .session import Batch, Poll, Session, Start
from .waits import Call, Steps

log = logging.getLogger("longpoll")

LOCAL_MESSAGE = ("this session is kept by the server process that made it, and this process does not hold it "
                 "(its generator keeps state of its own, so only that process can continue it); route each key to "
                 "the process its route names (longpoll.route), or run one process; start a new session")

CLAIMS = 5
"""Times a takeover reads and claims again when the record changed in between (each change is a poll that
another process answered meanwhile)."""

Rebuild = Callable[[dict[str, Any]], Start]
"""The recipe of a stored session's origin (its endpoint's function with the first poll's parameters)."""


class Held:
    """One request's hold on a session: the session (live, or taken over), and what it was asked for as."""

    __slots__ = ("session", "tag", "ttl", "rebuild", "new", "admitted")

    def __init__(self, session: Session, tag: tuple[str, Any], ttl: float, rebuild: Rebuild, new: bool):
        self.session = session
        self.tag = tag  # (endpoint name, identity): a key works only for what it was made for
        self.ttl = ttl  # how long the store keeps the record after this poll
        self.rebuild = rebuild
        self.new = new
        self.admitted = False  # counted against the session's poll rate (once per request)


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
               address: str, origin: dict[str, Any] | None) -> Held:
        """A new session (its key is handed out with its first batch, once :meth:`settle` knows its kind)."""
        if self.registry.stopping:
            raise Stopping()  # a session made here now would be made in a process about to go
        session = self.registry.create(start, tag, owner, address, origin=origin)
        return Held(session, tag, ttl, rebuild, new=True)

    def find(self, key: str, tag: tuple[str, Any], ttl: float, rebuild: Rebuild,
             cursor: str | None) -> Steps[Held]:
        """The session a poll of ``key`` continues: this process's copy, or one taken over from the store."""
        session = self.registry.get(key)
        if session is not None:
            check(session.tag, tag)
            if session.store is not None and session.ahead(cursor):  # another process answered since
                session = yield from self._take_over(key, tag, ttl, rebuild, cursor)
        elif key[:1] != DURABLE:
            raise Expired(LOCAL_MESSAGE) if key[:1] == LOCAL and self.stores() else Expired()
        else:
            session = yield from self._take_over(key, tag, ttl, rebuild, cursor)
        return Held(session, tag, ttl, rebuild, new=False)

    def _take_over(self, key: str, tag: tuple[str, Any], ttl: float, rebuild: Rebuild,
                   cursor: str | None) -> Steps[Session]:
        """Read the stored session, check the poll against it, claim it, and build it here (unless this
        process's copy is the one stored after all)."""
        for _ in range(CLAIMS):
            store, record = yield from self._read(key)
            origin = self._checked(record, key, tag, cursor)
            lease = yield Call(store.claim, key, ttl, record)
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
            return local
        identity = record.state.get("tag")
        try:
            session = Session.restore(key, rebuild(origin), record.state["session"], tag=(tag[0], identity),
                                      owner=record.state.get("owner"),
                                      quotas=tuple(tuple(q) for q in record.state.get("quotas", ())),
                                      origin=origin)
        except BackendUnavailable:
            raise  # passing: the next poll tries again
        except (LongPollError, Exception) as exc:
            # A state this version cannot build (parameters it refuses now, a function that changed) would fail
            # the same way on every retry while each takeover kept it alive: end it, and the client starts anew.
            log.warning("session %s… could not be resumed (%s: %s); ending it", key[:6], type(exc).__name__, exc)
            yield Call(store.delete, key)
            raise Expired("this session could not be resumed here; start a new one") from None
        session.store = store
        session.lease = lease
        self.registry.adopt(session)
        return session

    def _read(self, key: str) -> Steps[tuple[SessionStore, Record]]:
        for store in self.stores():
            record = yield Call(store.read, key)
            if record is not None:
                return store, record
        raise Expired()

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
            held.session = yield from self._take_over(held.session.key, held.tag, held.ttl, held.rebuild,
                                                      poll.cursor)
            settled = yield from self.settle(held, (yield from self._polled(held, poll)), poll)
        batch = settled or held.session.empty(poll, released=True)
        if self.registry.stopping and (batch.released or not batch.count):
            raise Stopping()  # held polls answer now, and nothing waits here any more: resume elsewhere
        return batch

    def _polled(self, held: Held, poll: Poll) -> Steps[Batch]:
        session = held.session
        try:
            batch = yield from session.steps(poll)
        except BaseException as exc:
            self.registry.polled(session, None)
            if isinstance(exc, LongPollError):
                yield from self._ended(session)
            raise
        self.registry.polled(session, batch, streamed=poll.streamed)
        return batch

    def settle(self, held: Held, batch: Batch, poll: Poll) -> Steps[Batch | None]:
        """Store what a poll answered before it is sent (a new session's key is named first): the batch to
        send, or None when this process lost the session and the poll, being the newer one, must take it over
        and poll again.  On an event loop, the commits of every poll answered in one moment (one publish
        releasing thousands) go to the store as one round trip."""
        session = held.session
        if held.new:
            held.new = False
            self._introduce(session, batch)
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
            return batch
        self.registry.discard(session)
        if code == GONE:
            raise Expired()  # it ended elsewhere, or expired
        if batch.waited or batch.released:  # the older poll: the newer one, elsewhere, has the session
            return session.empty(poll, released=True, ticket=batch.ticket)
        return None

    def _introduce(self, session: Session, batch: Batch) -> None:
        """A new session is about to hand out its key: durable when its recipe's feeds are on a store."""
        store = self._store_of(session)
        self.registry.mark(session, LOCAL if store is None else DURABLE)
        if store is not None:
            session.store = store
            session.sign(secrets.token_bytes(16), batch)
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

    def _released(self, key: str, lease: int) -> None:
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
