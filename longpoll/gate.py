"""A cap on how many polls may wait at once in this process.

Under cheroot every held poll occupies one worker thread until it returns.
If all of them wait, nothing is left to answer a poll that has data ready and
the server freezes (cheroot's default pool of 10 threads does so with 10 held
polls).  The gate lets a poll wait only while a reserve of threads stays free;
a poll turned away answers at once with an empty batch and ``retry_ms``.

The limit comes from, in order: ``HELD.limit`` set by the program,
``cherrypy.config['longpoll.max_held_polls']``, or the cheroot pool size
minus a reserve of a tenth (at least 2).  Under gevent set it high.
"""

from __future__ import annotations

import threading

import cherrypy


def default_limit() -> int:
    configured = cherrypy.config.get("longpoll.max_held_polls")
    if configured is not None:
        return int(configured)
    pool = int(getattr(cherrypy.server, "thread_pool", 10) or 10)
    return max(1, pool - max(2, pool // 10))


class HoldGate:
    __slots__ = ("limit", "held", "_lock")

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Claim a place to wait; False when the cap is reached."""
        limit = self.limit if self.limit is not None else default_limit()
        with self._lock:
            if self.held >= limit:
                return False
            self.held += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.held -= 1


HELD = HoldGate()
"""The process-wide gate every registry uses unless given its own."""
