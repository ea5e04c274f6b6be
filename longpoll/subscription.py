"""A session's bounded inbox at the hub.

The hub thread puts items in; the session's generator takes them out one at
a time, so the position of the last item actually taken is always known.
When the buffer is full the oldest item makes room and is counted in
``dropped``: a slow client loses the oldest news, never the newest, and is
told how much it lost.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .signals import Signal


class Subscription(Signal):
    __slots__ = ("topic", "filter", "maxlen", "dropped", "position", "start", "_buf", "_lock", "_leave",
                 "__weakref__")

    def __init__(self, leave: Callable[[Subscription], None] | None, topic: str, filter: Any, maxlen: int):
        """``leave(sub)`` takes it out of what fills it (its hub) when it closes."""
        super().__init__()
        self.topic = topic
        self.filter = filter
        self.maxlen = maxlen
        self.dropped = 0
        self.position: str | None = None  # of the last item taken out
        self.start: str | None = None  # the hub's position when subscribing: later entries come here
        # Made on the first put and dropped when emptied: an empty deque costs
        # 600 bytes, and most of 10,000 idle subscriptions hold nothing.
        self._buf: deque[tuple[str, Any]] | None = None
        self._lock = threading.Lock()
        self._leave = leave

    def put(self, position: str, item: Any) -> bool:
        """Buffer an item (the hub notifies afterwards); False if one was dropped."""
        with self._lock:
            buf = self._buf
            if buf is None:
                buf = self._buf = deque()
            buf.append((position, item))
            if len(buf) <= self.maxlen:
                return True
            buf.popleft()
            self.dropped += 1
            return False

    def take(self) -> tuple[str, Any] | None:
        """The oldest buffered (position, item), or None."""
        with self._lock:
            return self._pop() if self._buf else None

    def drain(self) -> Iterator[Any]:
        """Yield buffered items one by one until the buffer is empty."""
        while True:
            with self._lock:
                if not self._buf:
                    return
                self.position, item = self._pop()
            yield item

    def _pop(self) -> tuple[str, Any]:
        buf = self._buf
        assert buf is not None
        taken = buf.popleft()
        if not buf:
            self._buf = None
        return taken

    def __len__(self) -> int:
        return len(self._buf or ())

    def close(self) -> None:
        if self._leave is not None:
            self._leave(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
