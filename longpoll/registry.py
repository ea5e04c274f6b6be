"""The map from session key to live session, with its limits and counters.

Sessions are kept in least-recently-polled order, so expiring idle ones only
looks at the head of the map instead of every session.  Every registry in the
process is swept by the one reaper (see ``reaper.py``).

With a session store (``durable.py``) the map is a cache: durable sessions
are looked up in the store on every poll, rebuilt when this process lacks
them or holds them at an older batch, and saved after every new batch.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import reaper
from .durable import SessionStore
from .errors import Conflict, Expired, LongPollError, TooManyRequests, TooManySessions
from .gate import HELD, HoldGate
from .session import Batch, Session

Resume = Callable[[Any, Any], Iterator[Any]]
"""Rebuilds a durable session's iterator from its (definition, position)."""

KEY_BYTES = 18
"""144 random bits per key: unguessable, and 24 URL-safe characters."""


@dataclass(frozen=True)
class SessionLimits:
    """How much one registry, and one client of it, may hold and ask."""

    max_sessions: int = 10_000  # live sessions in this process (429 past it)
    max_per_owner: int = 20  # live sessions of one identifier (429 past it)
    polls_per_second: float = 50.0  # sustained polls of one session (429 with Retry-After past it)
    poll_burst: float = 100.0


class Registry:
    def __init__(self, idle_timeout: float = 60.0, max_sessions: int = 10_000,
                 name: str = "longpoll", gate: HoldGate | None = None, store: SessionStore | None = None,
                 limits: SessionLimits | None = None):
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.name = name
        self.idle_timeout = float(idle_timeout)
        self.limits = limits or SessionLimits(max_sessions=max_sessions)
        self.max_sessions = self.limits.max_sessions
        self._owners: dict[str, int] = {}
        self.gate = gate if gate is not None else HELD
        self.store = store
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self.polls = 0
        self.items_delivered = 0
        self.sessions_created = 0
        self.sessions_expired = 0
        self.sessions_resumed = 0
        reaper.track(self)

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, iterator: Iterator[Any], tag: Any = None, owner: str | None = None) -> Session:
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise TooManySessions(
                    f"this endpoint holds its limit of {self.max_sessions} sessions; retry later",
                    retry_after=min(self.idle_timeout, 30),
                )
            if owner is not None and self._owners.get(owner, 0) >= self.limits.max_per_owner:
                raise TooManySessions(
                    f"{owner!r} holds its limit of {self.limits.max_per_owner} sessions; reuse a session key, "
                    "or let unused sessions expire", retry_after=min(self.idle_timeout, 30))
            key = secrets.token_urlsafe(KEY_BYTES)
            session = Session(key, iterator, tag, owner)
            self._add(session)
            self.sessions_created += 1
        if self.store is not None and session.durable:
            try:
                self.store.save(key, session.snapshot(), -1)
            except LongPollError:
                self._discard(session)
                session.close()
                raise
        return session

    def get(self, key: str, resume: Resume | None = None) -> Session:
        """The live session for a key: this process's, or one rebuilt from the store."""
        session = self._sessions.get(key)
        if session is not None and session.closed:
            session = None
        if self.store is None or (session is not None and not session.durable):
            if session is None:
                raise Expired()
            return session
        state = self.store.load(key)
        if state is not None and session is not None and session.seq == state["seq"]:
            return session
        if session is not None:  # stale: another process has answered this session since
            self._discard(session)
            session.close()
        if state is None or resume is None or state.get("definition") is None:
            raise Expired()
        session = Session.restore(key, resume(state["definition"], state["position"]), state)
        with self._lock:
            self._add(session)
            self.sessions_resumed += 1
        return session

    def poll(self, session: Session, cursor: str | None, timeout: float, max_items: int) -> Batch:
        with self._lock:
            wait = session.admit(self.limits.polls_per_second, self.limits.poll_burst)
        if wait:
            raise TooManyRequests(f"more than {self.limits.polls_per_second:g} polls a second on one session; "
                                  "wait as retry_ms says", retry_after=wait, retry_ms=max(1, round(wait * 1000)))
        try:
            batch = session.poll(cursor, timeout, max_items, self.gate)
        except LongPollError:
            if session.closed:
                self._discard(session)
                if self.store is not None and session.durable:
                    self.store.delete(session.key)
            raise
        if self.store is not None and batch.snapshot is not None:
            if not self.store.save(session.key, batch.snapshot, batch.snapshot["seq"] - 1):
                self._discard(session)
                session.close()
                raise Conflict("another server answered a poll of this session at the same moment; poll again")
        with self._lock:
            self.polls += 1
            if batch.fresh:
                self.items_delivered += len(batch.items)
            if session.key in self._sessions:
                self._sessions.move_to_end(session.key)
        return batch

    def _add(self, session: Session) -> None:
        """Under the lock."""
        old = self._sessions.get(session.key)
        if old is not None:
            self._remove(old)
        self._sessions[session.key] = session
        if session.owner is not None:
            self._owners[session.owner] = self._owners.get(session.owner, 0) + 1

    def _remove(self, session: Session) -> None:
        """Under the lock."""
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
            if session.owner is not None:
                left = self._owners[session.owner] - 1
                if left:
                    self._owners[session.owner] = left
                else:
                    del self._owners[session.owner]

    def _discard(self, session: Session) -> None:
        with self._lock:
            self._remove(session)

    def expire(self, now: float | None = None) -> int:
        """Close sessions nobody has polled for idle_timeout seconds."""
        now = time.monotonic() if now is None else now
        idle: list[Session] = []
        with self._lock:
            for session in self._sessions.values():
                since = session.idle_since(now)
                if since is None:
                    continue  # a poll is in flight
                if since <= self.idle_timeout:
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
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._owners.clear()
        for session in sessions:
            session.close()

    def stats(self) -> dict[str, int]:
        return {
            "sessions": len(self._sessions),
            "polls": self.polls,
            "items_delivered": self.items_delivered,
            "sessions_created": self.sessions_created,
            "sessions_expired": self.sessions_expired,
            "sessions_resumed": self.sessions_resumed,
        }
