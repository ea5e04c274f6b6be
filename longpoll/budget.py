"""What all of a process's streams hold unsent, bounded in bytes.

A stream makes its next frame only once the connection took the one before
(``waits.py`` drives both fronts so), so what a stream holds unsent is the one
frame its connection has not taken.  A client that never reads leaves that
frame with the process for as long as its connection stays open, and the
session's window (``session.MAX_UNACKNOWLEDGED_BYTES``) bounds only what one
stream keeps: many such clients add up.  The budget adds them up.  A frame
that finds the process past it ends the slow streams (whose connections have
not taken their frames for ``SLOW_SECONDS``), the one holding the most
unsent bytes first (of equals, the one that has held them longest), until
the process is within it again.  A stream whose connection takes frames as
they come is not ended: a publish that wakes every stream makes a frame for
each in one moment, and their connections take them the next.

Ending a stream acknowledges nothing: what it sent stays in its session's
window, so its client resumes by ``Last-Event-ID`` or cursor where its
connection stopped taking frames.  A stream waiting at its front (an ASGI
send that does not return) is ended through ``on_end``, which the front gives
when it can cut a connection; a WSGI server's thread blocked in a write ends
its stream once the write returns (cheroot's socket timeout bounds that).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("longpoll")

MAX_STREAM_BYTES = 16 * 1024 * 1024
"""Bytes all of a process's streams may hold unsent, by default (``longpoll.max_stream_bytes``)."""

SLOW_SECONDS = 1.0
"""A stream whose connection has not taken its frame for this long is slow: past the budget, it is ended."""


class Account:
    """One stream's unsent bytes."""

    __slots__ = ("unsent", "since", "ended", "on_end")

    def __init__(self, on_end: Callable[[], None] | None):
        self.unsent = 0
        self.since = 0.0  # when its unsent frame was made
        self.ended = False  # the budget ended it: it makes no frame more
        self.on_end = on_end


class StreamBudget:
    def __init__(self, max_bytes: int = MAX_STREAM_BYTES):
        self.max_bytes = max_bytes
        self.unsent = 0
        self.ended = 0  # streams the budget ended
        self._accounts: set[Account] = set()
        self._next_scan = 0.0
        self._lock = threading.Lock()

    def open(self, on_end: Callable[[], None] | None = None) -> Account:
        """A stream's account; ``on_end()`` (from any thread) cuts its connection when the budget ends it."""
        account = Account(on_end)
        with self._lock:
            self._accounts.add(account)
        return account

    def hold(self, account: Account, size: int) -> bool:
        """A frame of ``size`` bytes is made; False when the stream is to end instead (the budget ended it
        while it waited).  Past the budget, the slow streams are ended (:meth:`enforce`)."""
        now = time.monotonic()
        with self._lock:
            if account.ended:
                return False
            account.unsent += size
            account.since = now
            self.unsent += size
            over = self.unsent > self.max_bytes and now >= self._next_scan
        if over:
            self.enforce(now)
        return True

    def enforce(self, now: float | None = None) -> int:
        """End slow streams, those holding most first, until the process is within its budget; how many.
        Called as frames are made, and by the engine's sweep (streams that all wait make no frame)."""
        now = time.monotonic() if now is None else now
        ended: list[Account] = []
        with self._lock:
            if self.unsent <= self.max_bytes:
                return 0
            # a burst past the budget with no slow stream looks again only a while later, not per frame
            self._next_scan = now + SLOW_SECONDS / 10
            slow = sorted((a for a in self._accounts if a.unsent and not a.ended and now - a.since >= SLOW_SECONDS),
                          key=lambda a: (a.unsent, -a.since), reverse=True)
            for slowest in slow:
                if self.unsent <= self.max_bytes:
                    break
                slowest.ended = True
                self.unsent -= slowest.unsent
                slowest.unsent = 0
                ended.append(slowest)
            if ended:
                self._next_scan = now
            self.ended += len(ended)
        for account in ended:
            if account.on_end is not None:
                account.on_end()
        if ended:
            log.info("longpoll: streams hold more than longpoll.max_stream_bytes (%d bytes) unsent; ended the %d "
                     "slowest (their clients resume where their connections stopped taking frames)",
                     self.max_bytes, len(ended))
        return len(ended)

    def took(self, account: Account) -> bool:
        """The connection took the stream's frame; False when the stream is to end (the budget ended it)."""
        with self._lock:
            self.unsent -= account.unsent
            account.unsent = 0
            return not account.ended

    def close(self, account: Account) -> None:
        with self._lock:
            self._accounts.discard(account)
            self.unsent -= account.unsent
            account.unsent = 0

    def stats(self) -> dict[str, int]:
        return {"stream_bytes_unsent": self.unsent, "streams_ended_by_budget": self.ended}


BUDGET = StreamBudget()
"""The process's budget: every front's streams count against it."""
