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

The registry knows nothing of polls or of other processes: ``lifecycle.py``
runs every poll, puts the sessions it builds from the session store in here
(:meth:`adopt`) and takes out copies that went stale (:meth:`discard`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from . import keys
from .errors import TooManyRequests, TooManySessions
from .gate import HELD, HoldGate
from .keys import DURABLE, KINDS, LOCAL, REPLAY  # noqa: F401 (lifecycle.py's names for the kinds; keys.py owns them)
from .session import Batch, Session, Start

log = logging.getLogger("longpoll")


@dataclass(frozen=True)
class SessionLimits:
    """How much one registry, and one client of it, may hold and ask."""

    max_sessions: int = 10_000  # live sessions in this registry (429 past it)
    max_per_owner: int = 20  # live sessions of one identifier (429 past it)
    max_per_address: int = 1_000  # live sessions made from one client address (429 past it)
    polls_per_second: float = 50.0  # sustained polls of one session (429 with Retry-After past it)
    poll_burst: float = 100.0
    unconfirmed_idle_timeout: float = 30.0  # a session polled only once gives its place up this soon after


def quotas(owner: str | None, address: str | None) -> tuple[tuple[str, str], ...]:
    """What a session counts against: its identifier's cap and its client address's (either may be None)."""
    return tuple((kind, value) for kind, value in (("owner", owner), ("address", address)) if value is not None)


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
                 session_limits: SessionLimits | None = None, name: str = "longpoll", gate: HoldGate | None = None):
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
        self._new: OrderedDict[str, Session] = OrderedDict()  # polled at most once
        self._settled: OrderedDict[str, Session] = OrderedDict()
        self._counts: dict[tuple[str, str], int] = {}  # ("owner" | "address", value) -> live sessions
        self._reserved = 0
        self._lock = threading.Lock()
        self.polls = 0
        self.items_delivered = 0
        self.sessions_created = 0
        self.sessions_expired = 0
        self.sessions_resumed = 0
        self.stopping = False  # the engine is stopping: no poll waits (plugin.py)

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

    def get(self, key: str) -> Session | None:
        """This process's live copy of a session, if it holds one."""
        session = self._settled.get(key) or self._new.get(key)
        return None if session is None or session.closed else session

    # -- creating --------------------------------------------------------

    def create(self, start: Start | Iterator[Any], tag: Any = None, owner: str | None = None,
               address: str | None = None, origin: dict[str, Any] | None = None) -> Session:
        """A new session, its slot reserved before ``start()`` builds the iterator.

        ``owner`` (an identifier) and ``address`` (the client's) are counted
        against their caps.  Passing an iterator instead of ``start`` works
        too: it is closed if the session is refused.  ``origin`` names the
        recipe in a stored session (``Session``).
        """
        counted = quotas(owner, address)
        given_up: list[Session] = []
        try:
            with self._lock:
                try:
                    self._check_room(counted)
                except TooManySessions:
                    given_up = self._make_room(counted)
                    self._check_room(counted)
                self._reserved += 1
                for quota in counted:
                    self._counts[quota] = self._counts.get(quota, 0) + 1
        except TooManySessions:
            _close(start)
            raise
        finally:
            for stale in given_up:  # outside the lock: a generator's finally may take time
                stale.close()
        try:
            session = Session(keys.new(), start, canonical(tag), owner, counted, origin=origin)
        except BaseException:
            with self._lock:
                self._reserved -= 1
                self._uncount(counted)
            _close(start)
            raise
        with self._lock:
            self._reserved -= 1
            self._new[session.key] = session
            self.sessions_created += 1
        return session

    def mark(self, session: Session, kind: str, key: str | None = None) -> None:
        """Mark a new session's key with its kind (KINDS), before the key is first handed out; ``key``: the
        key it is handed out as (a durable key that carries its parameters, ``keys.sealed``)."""
        key = key if key is not None else keys.marked(session.key, kind)
        if session.key == key:
            return
        with self._lock:
            for order in (self._new, self._settled):
                if order.get(session.key) is session:
                    del order[session.key]
                    session.key = key
                    order[session.key] = session
                    return
            session.key = key

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

    def _make_room(self, quotas: tuple[tuple[str, str], ...]) -> list[Session]:
        """Under the lock, when a new session finds no room: sessions polled only once and idle past
        ``unconfirmed_idle_timeout`` give their places up, those of the quota that is full (or any, when the
        registry is).  Only then: on a loaded server a client's second poll may wait in the server's queue
        for longer than that, and a session expired under it would answer its client 410 for nothing."""
        full = len(self._new) + len(self._settled) + self._reserved >= self.limits.max_sessions
        return self._give_up([session for session in self._idle(self._new, time.monotonic(),
                                                                 self.limits.unconfirmed_idle_timeout)
                              if full or any(quota in quotas for quota in session.quotas)])

    @staticmethod
    def _idle(order: OrderedDict[str, Session], now: float, timeout: float) -> Iterator[Session]:
        """Under the lock: the sessions of ``order`` that nobody has polled for ``timeout`` seconds."""
        for session in order.values():
            since = session.idle_since(now)
            if since is None:
                continue  # a poll is in flight
            if since <= timeout:
                return  # polled order: everything after this was polled later
            yield session

    def _give_up(self, sessions: list[Session]) -> list[Session]:
        """Under the lock: the sessions leave (the caller closes them, outside the lock)."""
        for session in sessions:
            self._remove(session)
        self.sessions_expired += len(sessions)
        return sessions

    def _uncount(self, quotas: tuple[tuple[str, str], ...]) -> None:
        """Under the lock."""
        for quota in quotas:
            left = self._counts[quota] - 1
            if left:
                self._counts[quota] = left
            else:
                del self._counts[quota]

    def adopt(self, session: Session) -> None:
        """A session built here from the session store: it serves from now on (a copy built at the same
        moment by another poll of this process gives way)."""
        with self._lock:
            old = self.get(session.key)
            if old is not None:
                self._remove(old)
            self._settled[session.key] = session
            for quota in session.quotas:
                self._counts[quota] = self._counts.get(quota, 0) + 1
            self.sessions_resumed += 1
        if old is not None:
            old.drop()

    # -- polls -------------------------------------------------------------

    def admit(self, session: Session) -> None:
        """The session's own bucket of polls, without the registry's lock: two polls of one session racing
        may let one more through, which the bucket's burst already allows."""
        wait = session.admit(self.limits.polls_per_second, self.limits.poll_burst)
        if wait:
            raise TooManyRequests(f"more than {self.limits.polls_per_second:g} polls a second on one session; "
                                  "wait as retry_ms says", retry_after=wait, retry_ms=max(1, round(wait * 1000)))

    def polled(self, session: Session, batch: Batch | None, *, streamed: bool = False) -> None:
        """A poll ended: the session goes to the back of its order, whatever the poll answered; a session
        that ended (done, failed, expired) goes.  A ``streamed`` batch's items count once its connection took
        them (:meth:`delivered`)."""
        with self._lock:
            if batch is not None:
                self.polls += 1
                if batch.fresh and not streamed:
                    self.items_delivered += batch.count
            key = session.key
            if session.closed:
                self._remove(session)
            elif self._settled.get(key) is session:
                self._settled.move_to_end(key)
            elif self._new.get(key) is session:
                if session.served > 1:
                    del self._new[key]
                    self._settled[key] = session
                else:
                    self._new.move_to_end(key)

    def delivered(self, count: int) -> None:
        """A stream's connection took a frame of ``count`` new items."""
        with self._lock:
            self.items_delivered += count

    # -- ending ----------------------------------------------------------

    def _remove(self, session: Session) -> None:
        """Under the lock."""
        for order in (self._new, self._settled):
            if order.get(session.key) is session:
                del order[session.key]
                self._uncount(session.quotas)
                return

    def discard(self, session: Session) -> None:
        """Let this process's copy go (it went stale: the session lives on in the store)."""
        with self._lock:
            self._remove(session)
        session.drop()

    def expire(self, now: float | None = None) -> int:
        """Close sessions nobody has polled for their idle timeout."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = self._give_up([session for order in (self._new, self._settled)
                                  for session in self._idle(order, now, self.idle_timeout)])
        for session in idle:  # outside the lock: a generator's finally may take time
            session.close()
        return len(idle)

    def stop_holding(self) -> None:
        """The process is stopping: every held poll answers now, and no poll waits from here on (the gate is
        closed first: a poll that begins between the two finds it closed, or is released)."""
        self.stopping = True
        self.gate.close()
        for session in self.sessions():
            session.release()

    def sessions(self) -> list[Session]:
        with self._lock:
            return [*self._new.values(), *self._settled.values()]

    def close_all(self) -> None:
        """Close every session; when the process is stopping, let each copy go instead (``Session.drop``).  A
        poll or stream still on one then answers that the server stops (503, ``event: stopping``), and its
        client resumes elsewhere or after the restart: not 410, which would make it start over.  (Under
        load a stream's thread may first run after this, not between the stop's release and this.)"""
        with self._lock:
            sessions = [*self._new.values(), *self._settled.values()]
            self._new.clear()
            self._settled.clear()
            self._counts.clear()
        for session in sessions:
            if self.stopping:
                session.drop()
            else:
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
