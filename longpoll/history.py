"""Topics' recent history, read from the log once and decoded once, shared by every feed of this process.

A feed that starts with ``backfill=N`` replays its topic's newest N entries,
and one resumed from a position (another process took its session over, or
the server restarted) replays what came after it.  Three hundred sessions
that each start with a thousand items would read, decode and keep three
hundred thousand; here they share one window of the topic:

- a window holds the topic's entries in ``(after, upto]``, decoded once (as
  the hub's live items are, ``items.py``);
- a request the window covers is a slice of it; one that reaches past it
  reads only what is missing (the entries since ``upto``, or those before
  ``after``) and the window grows;
- a feed keeps its slice (references to the shared entries), never a copy.

Windows are kept for the topics read most recently, up to ``max_bytes`` of
JSON in all (what a session still holds stays with it while it does).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import orjson

from .backends.base import Entry, Log, order
from .items import Shared

PAGE = 1000
"""Entries read from a topic's history at a time."""

MAX_BYTES = 64 * 1024 * 1024
"""JSON the windows of a process hold in all, by default."""

Replayed = list[tuple[str, Any]]
"""(position, item) pairs, oldest first: shared by every feed that replays them."""


class Window:
    """A topic's entries with ``after`` < position <= ``upto``, all of them (``after`` None: from the topic's
    first entry still in the log)."""

    __slots__ = ("entries", "orders", "after", "upto", "size")

    def __init__(self, upto: str):
        self.entries: Replayed = []
        self.orders: list[tuple[int, ...]] = []  # the entries' positions as they compare
        self.after: str | None = upto  # empty: nothing known below upto yet
        self.upto = upto
        self.size = 0

    def below(self, upto: str) -> int:
        """How many entries are at or below ``upto``."""
        return bisect.bisect_right(self.orders, order(upto))

    def covers(self, after: str) -> bool:
        return self.after is None or order(self.after) <= order(after)

    def add(self, found: list[tuple[str, Any, int]], at_end: bool) -> None:
        pairs = [(position, item) for position, item, _ in found]
        orders = [order(position) for position, _, _ in found]
        if at_end:
            self.entries += pairs
            self.orders += orders
        else:
            self.entries[:0] = pairs
            self.orders[:0] = orders
        self.size += sum(size for _, _, size in found)


class History:
    """The windows of one log's topics in this process (one per hub)."""

    def __init__(self, log: Log, items: Shared, max_bytes: int = MAX_BYTES):
        self.log = log
        self.items = items
        self.max_bytes = max_bytes
        self._windows: OrderedDict[str, Window] = OrderedDict()
        self._lock = threading.Lock()
        self.entries_read = 0  # entries read from the log for replays: once per window, not once per feed

    def newest(self, topic: str, count: int, upto: str) -> Replayed:
        """The topic's newest ``count`` entries at or below ``upto``, oldest first."""
        if not count:
            return []
        with self._lock:
            window = self._window(topic, upto)
            end = window.below(upto)
            if end < count and window.after is not None:
                fresh = self._decoded(self.log.newest(topic, count, upto))
                window = self._windows[topic] = Window(upto)
                window.add(fresh, at_end=True)
                window.after = None if len(fresh) < count else _before(fresh[0][0])
                end = len(window.entries)
            self._trim()
            return window.entries[max(0, end - count):end]

    def range(self, topic: str, after: str, upto: str) -> Replayed:
        """The topic's entries with ``after`` < position <= ``upto``, oldest first."""
        if order(after) >= order(upto):
            return []
        with self._lock:
            window = self._window(topic, upto)
            if not window.covers(after):
                below = window.entries[0][0] if window.entries else window.upto
                found = self._decoded(self._pages(topic, after, below))
                window.add([entry for entry in found if order(entry[0]) < order(below)] if window.entries
                           else found, at_end=False)
                window.after = after
            self._trim()
            start = bisect.bisect_right(window.orders, order(after))
            return window.entries[start:window.below(upto)]

    def forget(self) -> None:
        """The backend lost the log these windows were read from (the hub saw a new epoch): a feed resumed
        from the log's oldest position must read the log there is now, not replay what this process kept of
        the one that is gone."""
        with self._lock:
            self._windows.clear()

    def _window(self, topic: str, upto: str) -> Window:
        """The topic's window, grown to reach ``upto`` (under the lock)."""
        window = self._windows.get(topic)
        if window is None:
            window = self._windows[topic] = Window(upto)
        else:
            self._windows.move_to_end(topic)
        if order(upto) > order(window.upto):
            window.add(self._decoded(self._pages(topic, window.upto, upto)), at_end=True)
            window.upto = upto
        return window

    def _pages(self, topic: str, after: str, upto: str) -> Iterator[Entry]:
        while order(after) < order(upto):
            entries = self.log.topic_range((topic,), after, upto, PAGE)
            yield from entries
            if len(entries) < PAGE:
                return
            after = entries[-1].position

    def _decoded(self, entries: Any) -> list[tuple[str, Any, int]]:
        found = []
        for entry in entries:
            self.entries_read += 1
            try:
                found.append((entry.position, self.items.decoded(entry), len(entry.raw)))
            except orjson.JSONDecodeError:
                continue  # malformed: the hub counts these as it reads them live
        return found

    def _trim(self) -> None:
        """Let the least recently read windows go past ``max_bytes`` (under the lock)."""
        total = sum(window.size for window in self._windows.values())
        while total > self.max_bytes and len(self._windows) > 1:
            _, gone = self._windows.popitem(last=False)
            total -= gone.size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"history_bytes": sum(window.size for window in self._windows.values()),
                    "history_entries_read": self.entries_read}


def _before(position: str) -> str:
    """The position just below ``position`` (``"12"`` -> ``"11"``, ``"1700-3"`` -> ``"1700-2"``), as an exclusive
    bound that takes in ``position`` itself."""
    parts = list(order(position))
    for n in range(len(parts) - 1, -1, -1):
        if parts[n]:
            parts[n] -= 1
            parts[n + 1:] = [2**64 - 1] * (len(parts) - n - 1)
            break
    return "-".join(map(str, parts))
