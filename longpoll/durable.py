"""Durable sessions: continued by any process, after any restart, over any transport.

A session whose generator draws only from feeds of a Redis broker is a
recipe (``feed.py``): its endpoint, the first poll's parameters and its
feeds' positions, with what it sent and the client has not acknowledged.
That state is one record in Redis (``backends/store.py``), written once per
batch, and a process's registry is only a cache of live generators:

- **Continuing here.**  The process that answered a session's last poll
  continues it from its own copy, with no round trip before the poll, and
  one after it: the commit of the new batch (compare-and-set on the record's
  holder and batch number), or a touch when nothing new was sent.
- **Taking over.**  A poll whose key this process does not hold, or holds a
  copy of that went stale, *loads* the record: this process becomes its
  holder, builds the generator again from the recipe at the stored positions,
  and tells every other process (the release channel), where a poll held on
  an older copy answers at once and the copy is let go.  Only the process
  that holds a session can commit to it, so a poll in a process that lost it
  can never overwrite what the newer one sent: it answers as released when it
  was the older poll (it had waited), and takes the session back over when
  it is the newer (it answered at once, from a copy it did not know was old).
- **One commit at a time.**  Two polls of one key in one process (a stream
  and the one that replaces it) commit one after the other: each compares
  against the batch number the other may just have stored, and the loser of
  that race would take its own process for stale and release the newer poll.
- **Ending.**  A session that is done or failed deletes its record; a copy
  that went stale is only let go, never the session.

Keys say what kind of session they are (``keys.KINDS``), so a process
asked for a session another process keeps to itself says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from . import backends, plugin
from .backends.store import DONE, GONE, RedisSessionStore
from .errors import BackendUnavailable, Expired, Forbidden, LongPollError
from .registry import DURABLE, LOCAL, Registry, canonical
from .session import Batch, Poll, Session, Start

log = logging.getLogger("longpoll")

LOCAL_MESSAGE = ("this session is kept by the server process that made it, and this process does not hold it "
                 "(its generator keeps state of its own, so only that process can continue it); route each key to "
                 "the process its route names (longpoll.route), or run one process; start a new session")

SETTLING_LOCKS = 64
"""Locks that keep two commits of one key in one process apart (a key's is chosen by its hash)."""

Rebuild = Callable[[dict[str, Any]], Start]
"""The recipe of a stored session's origin (its endpoint's function with the first poll's parameters)."""


class Durable:
    """The protocol for one registry's sessions (see the module's docstring)."""

    def __init__(self, registry: Registry, backends: list[Any] | None = None):
        """``backends``: where a key this process does not hold is looked up (default: every Redis backend
        open in the process)."""
        self.registry = registry
        self.backends = backends
        self._listening: list[RedisSessionStore] = []
        self._settling = tuple(threading.Lock() for _ in range(SETTLING_LOCKS))

    # -- which session ----------------------------------------------------------------

    def find(self, key: str, tag: tuple[str, Any], rebuild: Rebuild, ttl: float, cursor: str | None) -> Session:
        """The session a poll of ``key`` continues: this process's copy, or one built from the store."""
        session = self.registry.get(key)
        if session is not None:
            check(session.tag, tag)
            if session.store is not None and session.ahead(cursor):
                return self.take_over(key, tag, rebuild, ttl, cursor)  # another process answered since
            return session
        if key[:1] != DURABLE:
            raise Expired(LOCAL_MESSAGE) if key[:1] == LOCAL and self._backends() else Expired()
        return self.take_over(key, tag, rebuild, ttl, cursor)

    def take_over(self, key: str, tag: tuple[str, Any], rebuild: Rebuild, ttl: float,
                  cursor: str | None) -> Session:
        """Load the stored session, become its holder, and build it here (unless this copy is current)."""
        for backend in self._backends():
            store = backend.sessions
            loaded = store.load(key, ttl)
            if loaded.state is not None:
                break
        else:
            raise Expired()
        self._listen(store)
        record = loaded.state
        origin = record.get("origin") or {}
        if origin.get("endpoint") != tag[0]:
            raise Forbidden("this session key was made for another endpoint")
        if record.get("local"):
            raise Expired(LOCAL_MESSAGE)
        identity = record.get("tag")
        if identity != canonical(tag[1]):
            raise Forbidden("this session key was made for another identifier or resource")
        state = record["session"]
        local = self.registry.get(key)
        if local is not None and loaded.holder == store.me and local.stored == state["seq"]:
            local.lease = loaded.lease  # this process's copy is the one stored after all
            return local
        try:
            session = Session.restore(key, rebuild(origin), state, tag=(tag[0], identity), owner=record.get("owner"),
                                      quotas=tuple(tuple(q) for q in record.get("quotas", ())),
                                      origin=origin)
        except BackendUnavailable:
            raise  # passing: the next poll tries again
        except (LongPollError, Exception) as exc:
            # A state this version cannot build (parameters it refuses now, a function that changed) would fail
            # the same way on every retry while each load kept it alive: end it, and the client starts anew.
            log.warning("session %s… could not be resumed (%s: %s); ending it", key[:6], type(exc).__name__, exc)
            store.delete(key)
            raise Expired("this session could not be resumed here; start a new one") from None
        session.store = store
        session.lease = loaded.lease
        self.registry.adopt(session)
        if session.ahead(cursor):  # the client has a batch the store lost: carry on after it, saying so
            session.adopt(str(cursor))
        return session

    # -- after a poll -----------------------------------------------------------------------

    def introduce(self, session: Session) -> None:
        """A new session is about to hand out its key: durable when its recipe's feeds are on Redis."""
        store = self._store_of(session)
        self.registry.mark(session, LOCAL if store is None else DURABLE)
        session.store = store
        if store is not None:
            self._listen(store)

    def settle(self, session: Session, batch: Batch, poll: Poll, ttl: float) -> Batch | None:
        """Store what a poll answered before it is sent: the batch to send, or None when this process lost the
        session and the poll, being the newer one, must take it over and poll again."""
        store = session.store
        if store is None:
            return batch
        with self._settling[hash(session.key) % SETTLING_LOCKS]:
            return self._settle(store, session, batch, poll, ttl)

    def _settle(self, store: RedisSessionStore, session: Session, batch: Batch, poll: Poll, ttl: float) -> Batch | None:
        seq = session.seq  # before the state, which is then at least as new as the number it is stored under
        state = self.record(session)
        if session.stored != seq or state.get("local"):  # a batch the store lacks (one whose commit
            # failed, Redis being away, is sent again now: it must be stored before the client has it)
            code = store.commit(session.key, session.stored, seq, state, ttl)
        else:
            code = store.touch(session.key, ttl)
        if code == GONE and store.lost_since(session.born):
            # Redis lost its data while this process held the session: carry on from here, stored again, and
            # say that items may be missing (what was in the log and not yet read here is gone).
            batch.gap = True
            code = store.commit(session.key, -1, seq, state, ttl)
        if code == DONE:
            session.stored = seq
            return batch
        self.registry.discard(session)
        if code == GONE:
            raise Expired()  # it ended elsewhere, or expired
        if batch.waited or batch.released:  # the older poll: the newer one, elsewhere, has the session
            return session.empty(poll, released=True, ticket=batch.ticket)
        return None

    def ended(self, session: Session) -> None:
        """A poll found its session over (done and acknowledged, or failed): its record goes too."""
        if session.store is not None and session.closed and not session.stale:
            try:
                session.store.delete(session.key)
            except BackendUnavailable:
                pass  # it expires on its own

    def record(self, session: Session) -> dict[str, Any]:
        """What the store keeps of a session."""
        origin = session.origin or {}
        if not session.recipe():
            return {"local": True, "origin": {"endpoint": origin.get("endpoint")}}
        return {"origin": origin, "tag": session.tag[1] if isinstance(session.tag, (list, tuple)) else None,
                "owner": session.owner, "quotas": [list(q) for q in session.quotas], "session": session.checkpoint()}

    # -- other processes ---------------------------------------------------------------------

    def _backends(self) -> list[Any]:
        return self.backends if self.backends is not None else backends.durable()

    def _store_of(self, session: Session) -> RedisSessionStore | None:
        if not session.recipe():
            return None
        stores = {id(feed.broker.backend): feed.broker.backend.sessions for feed in session.feeds.feeds}
        store = next(iter(stores.values())) if len(stores) == 1 else None
        return store if isinstance(store, RedisSessionStore) else None

    def _listen(self, store: RedisSessionStore) -> None:
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
