"""A cap on how many polls may wait at once in this process.

Under cheroot every held poll occupies one worker thread until it returns; if
all of them wait, nothing is left to answer a poll that has data and the
server freezes.  The gate lets a poll wait only while a reserve of threads
stays free; a poll turned away answers at once with an empty batch and
``retry_ms``.  Its limit is ``HELD.limit`` if the program sets one, else
whatever ``sizing.held_limit()`` reads off the running server.
"""

from __future__ import annotations

import threading

from .sizing import held_limit


class HoldGate:
    """Also how a stopping process tells every poll not to wait: :meth:`close` (before held polls are released,
    so that a poll which begins between the two sees one or the other)."""

    __slots__ = ("limit", "held", "closed", "_lock")

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.held = 0
        self.closed = False
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Claim a place to wait; False when the cap is reached, or the gate is closed."""
        limit = self.limit if self.limit is not None else held_limit()
        with self._lock:
            if self.closed or self.held >= limit:
                return False
            self.held += 1
            return True

    def close(self) -> None:
        self.closed = True

    def open(self) -> None:
        self.closed = False

    def leave(self) -> None:
        with self._lock:
            self.held -= 1


HELD = HoldGate()
"""The process-wide gate every registry uses unless given its own."""
