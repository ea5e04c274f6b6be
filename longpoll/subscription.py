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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .signals import Signal

if TYPE_CHECKING:
    from .hub import Hub


class Subscription(Signal):
    __slots__ = ("topic", "filter", "maxlen", "dropped", "position", "start", "_buf", "_lock", "_hub",
                 "__weakref__")

    def __init__(self, hub: Hub, topic: str, filter: Any, maxlen: int):
        super().__init__()
        self.topic = topic
        self.filter = filter
        self.maxlen = maxlen
        self.dropped = 0
        self.position: str | None = None  # of the last item taken out
        self.start: str | None = None  # the hub's position when subscribing: later entries come here
        self._buf: deque[tuple[str, Any]] = deque()
        self._lock = threading.Lock()
        self._hub = hub

    def put(self, position: str, item: Any) -> bool:
        """Buffer an item (the hub notifies afterwards); False if one was dropped."""
        with self._lock:
            self._buf.append((position, item))
            if len(self._buf) <= self.maxlen:
                return True
            self._buf.popleft()
            self.dropped += 1
            return False

    def take(self) -> tuple[str, Any] | None:
        """The oldest buffered (position, item), or None."""
        with self._lock:
            return self._buf.popleft() if self._buf else None

    def drain(self) -> Iterator[Any]:
        """Yield buffered items one by one until the buffer is empty."""
        while True:
            with self._lock:
                if not self._buf:
                    return
                self.position, item = self._buf.popleft()
            yield item

    def __len__(self) -> int:
        return len(self._buf)

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
