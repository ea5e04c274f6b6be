"""A cap on how many polls may wait at once in this process.

Under a threaded server every held poll occupies one of its threads until it
returns; if all of them wait, nothing is left to answer a poll that has data
(or any other page of the app) and the server freezes.  The gate lets a poll
wait only while a reserve of the server's threads stays free; a poll turned
away answers at once with an empty batch and ``retry_ms``.  Its limit is
``HELD.limit`` if the program sets one, else whatever ``sizing.hold_budget()``
reads off the running server.  The first poll it turns away is logged, once,
with what set the limit and the setting that changes it: an app whose polls
all come back at once with ``retry_ms`` would otherwise look merely busy.
"""

from __future__ import annotations

import logging
import threading

from .sizing import Budget, hold_budget

log = logging.getLogger("longpoll")


class HoldGate:
    """Also how a stopping process tells every poll not to wait: :meth:`close` (before held polls are released,
    so that a poll which begins between the two sees one or the other)."""

    __slots__ = ("limit", "held", "closed", "turned_away", "_lock")

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.held = 0
        self.closed = False
        self.turned_away = 0  # polls refused a place because the gate was full
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Claim a place to wait; False when the cap is reached, or the gate is closed."""
        budget = Budget(self.limit, "the gate's own limit") if self.limit is not None else hold_budget()
        with self._lock:
            if self.closed:
                return False
            if self.held < budget.held:
                self.held += 1
                return True
            self.turned_away += 1
            first = self.turned_away == 1
        if first:
            log.warning("longpoll: %d polls wait already, the most this process holds (%s); more polls answer at "
                        "once with an empty batch and retry_ms until one ends. longpoll.max_held_polls (global "
                        "config) sets how many may wait", budget.held, budget.source)
        return False

    def close(self) -> None:
        self.closed = True

    def open(self) -> None:
        self.closed = False

    def leave(self) -> None:
        with self._lock:
            self.held -= 1


HELD = HoldGate()
"""The process-wide gate every registry uses unless given its own."""
