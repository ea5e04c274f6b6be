"""The map from session key to live session, with its limits and counters.

Sessions are kept in least-recently-polled order, so expiring idle ones only
looks at the head of the map instead of every session.  Sessions polled only
once wait in a map of their own with a shorter idle timeout: a client that
opens sessions and never comes back cannot hold the slots of clients that
do.  Every poll's end moves its session to the back, whatever the poll
answered, so the order always follows ``last_seen``.

Creating a session reserves its slot first and builds the generator outside
the lock; a refused or failed creation never leaves a generator (or its
subscriptions) behind.

With a session store (``durable.py``) the map is a cache: durable sessions
are looked up in the store on every poll, rebuilt when this process lacks
them or holds them at an older batch than the store, and saved after every
new batch.  Each poll of a durable session holds a *ticket* from the store;
only the newest poll of a key may commit a batch, so an abandoned older poll
in another process can never beat the newer one.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from . import plugin
from .durable import SessionStore
from .errors import BackendUnavailable, Conflict, Expired, Forbidden, LongPollError, TooManyRequests, TooManySessions
from .gate import HELD, HoldGate
from .session import READY, Batch, Encode, Session

log = logging.getLogger("longpoll")

Resume = Callable[[Any, Any], Iterator[Any]]
"""Rebuilds a durable session's iterator from its (definition, position)."""

Start = Callable[[], Iterator[Any]]
"""Builds a new session's iterator; called only once the session has a slot."""

KEY_BYTES = 18
"""144 random bits per key: unguessable, and 24 URL-safe characters."""


@dataclass(frozen=True)
class SessionLimits:
    """How much one registry, and one client of it, may hold and ask."""

    max_sessions: int = 10_000  # live sessions in this registry (429 past it)
    max_per_owner: int = 20  # live sessions of one identifier (429 past it)
    max_per_address: int = 1_000  # live sessions made from one client address (429 past it)
    polls_per_second: float = 50.0  # sustained polls of one session (429 with Retry-After past it)
    poll_burst: float = 100.0
    unconfirmed_idle_timeout: float = 30.0  # a session polled only once expires this soon after that poll


def canonical(tag: Any) -> Any:
    """A bind tag as it reads back from JSON (a tuple becomes a list), so a rebuilt session compares equal."""
    if tag is None or isinstance(tag, (str, int, float, bool)):
        return tag
    try:
        return orjson.loads(orjson.dumps(tag))
    except TypeError:
        return tag  # not JSON: fine for this process, and such a session is not durable


class Registry:
    def __init__(self, idle_timeout: float = 60.0, max_sessions: int | None = None, *,
                 session_limits: SessionLimits | None = None, name: str = "longpoll",
                 gate: HoldGate | None = None, store: SessionStore | None = None):
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if max_sessions is not None and session_limits is not None:
            raise ValueError("give max_sessions or session_limits, not both")
        limits = session_limits or SessionLimits(max_sessions=10_000 if max_sessions is None else max_sessions)
        if limits.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.name = name
        self.idle_timeout = float(idle_timeout)
        self.limits = limits
        self.gate = gate if gate is not None else HELD
        self.store = store
        self._new: OrderedDict[str, Session] = OrderedDict()  # polled at most once
        self._settled: OrderedDict[str, Session] = OrderedDict()
        self._counts: dict[tuple[str, str], int] = {}  # ("owner" | "address", value) -> live sessions
        self._reserved = 0
        self._lock = threading.Lock()
        self._tracked = False
        self.polls = 0
        self.items_delivered = 0
        self.sessions_created = 0
        self.sessions_expired = 0
        self.sessions_resumed = 0

    @property
    def max_sessions(self) -> int:
        return self.limits.max_sessions

    def configure(self, idle_timeout: float | None = None, **limits: Any) -> None:
        """Change settings of a live registry (from an app's config); ``limits`` are config names:
        max_sessions, max_sessions_per_identifier, max_sessions_per_address, polls_per_second, poll_burst,
        unconfirmed_idle_timeout."""
        if idle_timeout is not None:
            self.idle_timeout = float(idle_timeout)
        fields = {"max_sessions_per_identifier": "max_per_owner", "max_sessions_per_address": "max_per_address"}
        self.limits = replace(self.limits, **{fields.get(name, name): value for name, value in limits.items()})

    def __len__(self) -> int:
        return len(self._new) + len(self._settled)

    def _session(self, key: str) -> Session | None:
        return self._settled.get(key) or self._new.get(key)

    # -- creating --------------------------------------------------------

    def create(self, start: Start | Iterator[Any], tag: Any = None, owner: str | None = None,
               address: str | None = None) -> Session:
        """A new session, its slot reserved before ``start()`` builds the iterator.

        ``owner`` (an identifier) and ``address`` (the client's) are counted
        against their caps.  Passing an iterator instead of ``start`` works
        too: it is closed if the session is refused.
        """
        quotas = tuple(q for q in (("owner", owner), ("address", address)) if q[1] is not None)
        self._track()
        try:
            with self._lock:
                self._check_room(quotas)
                self._reserved += 1
                for quota in quotas:
                    self._counts[quota] = self._counts.get(quota, 0) + 1
        except TooManySessions:
            _close(start)
            raise
        session = None
        try:
            iterator = start() if callable(start) else start
            session = Session(secrets.token_urlsafe(KEY_BYTES), iterator, canonical(tag), owner, quotas)
            if self.store is not None and session.durable:
                self.store.save(session.key, session.snapshot(), -1, None)
        except BaseException:
            with self._lock:
                self._reserved -= 1
                self._uncount(quotas)
            if session is not None:
                session.close()
            else:
                _close(start)
            raise
        with self._lock:
            self._reserved -= 1
            self._new[session.key] = session
            self.sessions_created += 1
        return session

    def _check_room(self, quotas: tuple[tuple[str, str], ...]) -> None:
        """Under the lock."""
        retry = min(self.idle_timeout, 30)
        if len(self._new) + len(self._settled) + self._reserved >= self.limits.max_sessions:
            raise TooManySessions(f"this endpoint holds its limit of {self.limits.max_sessions} sessions; retry later",
                                  retry_after=retry)
        for kind, value in quotas:
            cap = self.limits.max_per_owner if kind == "owner" else self.limits.max_per_address
            if self._counts.get((kind, value), 0) >= cap:
                who = repr(value) if kind == "owner" else "this client address"
                raise TooManySessions(f"{who} holds its limit of {cap} sessions; reuse a session key, "
                                      "or let unused sessions expire", retry_after=retry)

    def _uncount(self, quotas: tuple[tuple[str, str], ...]) -> None:
        """Under the lock."""
        for quota in quotas:
            left = self._counts[quota] - 1
            if left:
                self._counts[quota] = left
            else:
                del self._counts[quota]

    def _track(self) -> None:
        """On first use, not in the constructor: put the registry under the engine's plugin (expiry),
        and have the store tell it about newer polls in other processes."""
        if not self._tracked:
            self._tracked = True
            plugin.current().track(self)
            if self.store is not None:
                self.store.on_release(self.release)

    # -- continuing ------------------------------------------------------

    def get(self, key: str, resume: Resume | None = None) -> Session:
        """The live session for a key: this process's, or one rebuilt from the store."""
        session, ticket = self.lease(key, resume=resume)
        if ticket is not None and self.store is not None:
            self.store.finish(key, ticket)
        return session

    def lease(self, key: str, tag: Any = None, resume: Resume | None = None, *,
              check_tag: bool = False) -> tuple[Session, int | None]:
        """The session for a poll of ``key``, and the poll's store ticket (None without a store).

        With ``check_tag`` a session made for another tag is refused: 410
        when it belongs to another endpoint (``tag[0]``), 403 when to another
        identity.  A lease's ticket is handed back by :meth:`poll`.
        """
        session = self._session(key)
        if session is not None and session.closed:
            session = None
        ticket = None
        if self.store is not None and (session is None or session.durable):
            state, ticket = self.store.load(key)
            if state is None and session is not None and self.store.lost_since(session.born):
                # Redis lost this session while this process held it: carry on from here, saved again,
                # and tell the client some items may be missing.
                session.mark_gap()
                self.store.save(key, session.snapshot(), -1, None)
                state = session.snapshot()
            if session is not None and (state is None or state["seq"] > session.seq):
                self._discard(session)  # stale: another process has answered this session since
                session.close()
                session = None
            if session is None and state is not None and resume is not None and state.get("definition") is not None:
                session = self._rebuild(key, resume, state)
        if session is None:
            raise Expired()
        if check_tag:
            wanted = canonical(tag)
            if session.tag[0] != wanted[0]:
                self._finish(key, ticket)
                raise Expired()
            if session.tag[1] != wanted[1]:
                self._finish(key, ticket)
                raise Forbidden("this session key was made for another identifier or resource")
        return session, ticket

    def _rebuild(self, key: str, resume: Resume, state: dict[str, Any]) -> Session:
        self._track()
        try:
            session = Session.restore(key, resume(state["definition"], state["position"]), state)
        except BackendUnavailable:
            raise  # passing: the next poll tries again
        except Exception as exc:
            # A state this version cannot rebuild (corrupt, or from another version) would fail the same
            # way on every retry while each poll's load kept it alive: end it, and the client starts anew.
            log.warning("session %s… could not be rebuilt (%s: %s); ending it", key[:6], type(exc).__name__, exc)
            self.store.delete(key)  # type: ignore[union-attr]  # only sessions from a store are rebuilt
            raise Expired("this session could not be resumed here; start a new one") from None
        with self._lock:
            old = self._session(key)
            if old is not None:  # two polls rebuilt it at once: the newer one's copy serves
                self._remove(old)
            self._settled[key] = session
            for quota in session.quotas:
                self._counts[quota] = self._counts.get(quota, 0) + 1
            self.sessions_resumed += 1
        if old is not None:
            old.close()
        return session

    def poll(self, session: Session, cursor: str | None, timeout: float, max_items: int,
             ticket: int | None = None, encode: Encode | None = None, *, stream: bool = False,
             keep: bool = False, follow: int | None = None) -> Batch:
        """The next batch of a session; ``ticket`` is the one :meth:`lease` gave for this poll,
        ``encode`` what turns each item into what is sent (see ``Session.poll``).

        ``stream``: one of the polls a stream makes on its session.  The stream
        holds its place at the hold gate and counts against the poll rate once,
        for all of them.  ``keep``: its batches after the first are kept until
        the client acknowledges them, and ``follow`` carries the stream's session ticket from one of its
        polls to the next (``Session.poll``).
        """
        # The session's own bucket, without the registry's lock: two polls of one session racing may let
        # one more through, which the bucket's burst already allows.
        wait = 0.0 if stream else session.admit(self.limits.polls_per_second, self.limits.poll_burst)
        if wait:
            self._finish(session.key, ticket)
            raise TooManyRequests(f"more than {self.limits.polls_per_second:g} polls a second on one session; "
                                  "wait as retry_ms says", retry_after=wait, retry_ms=max(1, round(wait * 1000)))
        committed = False
        try:
            try:
                batch = session.poll(cursor, timeout, max_items, None if stream else self.gate, encode, keep=keep,
                                     follow=follow)
            except LongPollError:
                self._polled(session, None)
                if session.closed:
                    self._discard(session)
                    if self.store is not None and session.durable:
                        self.store.delete(session.key)
                raise
            except BaseException:
                self._polled(session, None)
                raise
            self._polled(session, batch)
            if self.store is not None and batch.snapshot is not None:
                saved = self.store.save(session.key, batch.snapshot, batch.snapshot["seq"] - 1, ticket)
                committed = True
                if saved < 0:  # a newer poll of this key reached another process: it wins, this one is released
                    self._discard(session)
                    session.close()
                    return Batch(READY, "0" if cursor is None else cursor, [], batch.dropped, released=True)
                if not saved:
                    self._discard(session)
                    session.close()
                    raise Conflict("another server answered a poll of this session at the same moment; poll again")
        finally:
            if not committed:
                self._finish(session.key, ticket)
        return batch

    def end_lease(self, key: str, ticket: int | None) -> None:
        """A lease ends without a poll (a stream turned away, say): what a poll's end does."""
        self._finish(key, ticket)

    def _finish(self, key: str, ticket: int | None) -> None:
        """A poll ends without committing a batch: the store keeps the session for another idle timeout."""
        if ticket is None or self.store is None:
            return
        try:
            self.store.finish(key, ticket)
        except LongPollError:
            pass  # the backend is away: the poll's own answer says so, or has already been made

    def _polled(self, session: Session, batch: Batch | None) -> None:
        """A poll ended: the session goes to the back of its order, whatever the poll answered."""
        with self._lock:
            if batch is not None:
                self.polls += 1
                if batch.fresh:
                    self.items_delivered += len(batch.items)
            key = session.key
            if self._settled.get(key) is session:
                self._settled.move_to_end(key)
            elif self._new.get(key) is session:
                if session.served > 1:
                    del self._new[key]
                    self._settled[key] = session
                else:
                    self._new.move_to_end(key)

    def release(self, key: str) -> None:
        """A newer poll of this key began elsewhere: answer a poll held here at once."""
        session = self._session(key)
        if session is not None:
            session.release()

    # -- ending ----------------------------------------------------------

    def _remove(self, session: Session) -> None:
        """Under the lock."""
        for order in (self._new, self._settled):
            if order.get(session.key) is session:
                del order[session.key]
                self._uncount(session.quotas)
                return

    def _discard(self, session: Session) -> None:
        with self._lock:
            self._remove(session)

    def expire(self, now: float | None = None) -> int:
        """Close sessions nobody has polled for their idle timeout."""
        now = time.monotonic() if now is None else now
        idle: list[Session] = []
        with self._lock:
            for order, timeout in ((self._new, min(self.idle_timeout, self.limits.unconfirmed_idle_timeout)),
                                   (self._settled, self.idle_timeout)):
                for session in order.values():
                    since = session.idle_since(now)
                    if since is None:
                        continue  # a poll is in flight
                    if since <= timeout:
                        break  # polled order: everything after this was polled later
                    idle.append(session)
            for session in idle:
                self._remove(session)
            self.sessions_expired += len(idle)
        for session in idle:  # outside the lock: a generator's finally may take time
            session.close()
        return len(idle)

    def close_all(self) -> None:
        with self._lock:
            sessions = [*self._new.values(), *self._settled.values()]
            self._new.clear()
            self._settled.clear()
            self._counts.clear()
        for session in sessions:
            session.close()

    def stats(self) -> dict[str, int]:
        return {
            "sessions": len(self),
            "polls": self.polls,
            "items_delivered": self.items_delivered,
            "sessions_created": self.sessions_created,
            "sessions_expired": self.sessions_expired,
            "sessions_resumed": self.sessions_resumed,
        }


def _close(start: Any) -> None:
    """Close an iterator handed in instead of a ``start`` function."""
    close = None if callable(start) else getattr(start, "close", None)
    if close is not None:
        close()
