"""The embedded backend: everything in this process, nothing to install.

It has the shape of the Redis backend so that the hub, the sessions and the
tests cannot tell them apart: an append-only log with positions that a reader
follows, and items stored as JSON text, so a publisher mutating its dict
afterwards changes nothing that was published.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import orjson

from ..errors import BadRequest
from .base import Entry

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""What the embedded log keeps at most, whatever its entry count."""


class MemoryLog:
    """A capped, in-process log; positions are decimal sequence numbers.

    Capped twice: at ``retention`` entries and at ``max_bytes`` of entries,
    so that whoever may publish cannot make the process keep more than that.
    """

    def __init__(self, retention: int = 100_000, max_bytes: int = DEFAULT_MAX_BYTES):
        self._entries: deque[tuple[int, str, bytes]] = deque()
        self.retention = retention
        self.max_bytes = max_bytes
        self._bytes = 0
        self._seq = 0
        self._cond = threading.Condition()

    def append(self, topic: str, item: Any) -> str:
        try:
            raw = orjson.dumps(item)
        except TypeError as exc:
            raise BadRequest(f"item is not JSON: {exc}") from None
        with self._cond:
            self._seq += 1
            self._entries.append((self._seq, topic, raw))
            self._bytes += len(raw)
            while len(self._entries) > self.retention or (self._bytes > self.max_bytes and len(self._entries) > 1):
                self._bytes -= len(self._entries.popleft()[2])
            self._cond.notify_all()
            return str(self._seq)

    def tail(self) -> str:
        return str(self._seq)

    def read(self, after: str, block: float, count: int = 1000) -> list[Entry]:
        with self._cond:
            if self._seq <= int(after) and block > 0:
                self._cond.wait(block)
            return self._slice(int(after), self._seq, count)

    def range(self, after: str, upto: str, count: int = 1000) -> list[Entry]:
        with self._cond:
            return self._slice(int(after), int(upto), count)

    def _slice(self, after: int, upto: int, count: int) -> list[Entry]:
        if not self._entries or min(upto, self._seq) <= after:
            return []
        first = self._entries[0][0]  # sequence numbers are contiguous from here
        index = max(0, after + 1 - first)  # entries before `first` were trimmed
        end = min(len(self._entries), index + count, upto - first + 1)
        return [Entry(str(seq), topic, raw) for seq, topic, raw in (self._entries[i] for i in range(index, end))]

    def trimmed_after(self, position: str) -> bool:
        with self._cond:
            return bool(self._entries) and int(position) < self._entries[0][0] - 1

    def epoch(self) -> str:
        return "memory"  # it lives and dies with the process, and its sessions with it

    def wake(self) -> None:
        """Release a blocked read (the hub is stopping)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        self.wake()
