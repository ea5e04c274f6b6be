"""Waking polls that wait on an event loop, from whichever thread has news.

A poll held on an event loop is a future; the hub that finds it an item runs
on a thread of its own, and one publish can wake ten thousand such polls.
``call_soon_threadsafe`` per poll would write to the loop's wake-up pipe ten
thousand times; :class:`LoopWaker` queues the futures and asks the loop once
to resolve everything queued.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable


class LoopWaker:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._queued: deque[asyncio.Future[None]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def waking(self, future: asyncio.Future[None]) -> Callable[[], None]:
        """What resolves ``future`` from any thread (a session's waiter)."""
        def wake() -> None:
            self._queued.append(future)
            with self._lock:
                if self._scheduled:
                    return
                self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        return wake

    def _resolve(self) -> None:
        with self._lock:
            self._scheduled = False
        queued = self._queued
        while queued:
            future = queued.popleft()
            if not future.done():
                future.set_result(None)


_wakers: dict[asyncio.AbstractEventLoop, LoopWaker] = {}


def waker(loop: asyncio.AbstractEventLoop) -> LoopWaker:
    """The loop's waker (one per loop: every poll it holds shares it)."""
    found = _wakers.get(loop)
    if found is None or found.loop is not loop:
        found = _wakers[loop] = LoopWaker(loop)
    return found
