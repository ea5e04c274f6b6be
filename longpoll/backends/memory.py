"""The embedded backend: everything in this process, nothing to install.

It has the shape of the Redis backend so that the hub, the feeds, the
sessions and the tests cannot tell them apart: an append-only log with
positions that a reader follows, each topic's own history beside it, and
items stored as JSON text, so a publisher mutating its dict afterwards
changes nothing that was published.  Sessions live and die with the process,
so there is no session store.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ..encoding import exact
from .base import (
    DEFAULT_IDEMPOTENCY_KEYS,
    DEFAULT_IDEMPOTENCY_WINDOW,
    DEFAULT_LOG_RETENTION,
    DEFAULT_RETENTION,
    Entry,
    Retention,
    SessionStore,
    dumped,
    order,
    retention_of,
)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""What the embedded log keeps at most, whatever its entry count."""

IDEMPOTENCY_BYTES = 16 * 1024 * 1024
"""What the embedded log's idempotency keys hold at most, counted as :data:`KEY_OVERHEAD` plus the characters
of each one's topic, key and position."""

KEY_OVERHEAD = 320
"""Bytes one remembered key costs beyond its strings' characters (its ordered-dict node, tuples, the float and
the strings' headers), as tracemalloc measures it on CPython, rounded up."""

_Kept = tuple[int, str, bytes]  # (sequence number, topic, JSON)


class _Keys:
    """The idempotency keys a log remembers, oldest first: each until its window ends, or until the bounds (a
    count and bytes) push it out first.  Used under the log's lock."""

    def __init__(self, window: float, most: int, max_bytes: int):
        self.window = window
        self.most = most
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()  # -> (forgotten at, position)
        self._bytes = 0

    def find(self, topic: str, key: str, now: float) -> str | None:
        kept = self._kept
        while kept:  # every key has the same window: the oldest are the first to end
            (old_topic, old_key), (until, position) = next(iter(kept.items()))
            if until > now:
                break
            self._forget(old_topic, old_key, position)
        found = kept.get((topic, key))
        return found[1] if found is not None else None

    def remember(self, topic: str, key: str, position: str, now: float) -> None:
        self._kept[topic, key] = (now + self.window, position)
        self._bytes += KEY_OVERHEAD + len(topic) + len(key) + len(position)
        while len(self._kept) > self.most or self._bytes > self.max_bytes:
            (old_topic, old_key), (_until, old_position) = next(iter(self._kept.items()))
            self._forget(old_topic, old_key, old_position)

    def _forget(self, topic: str, key: str, position: str) -> None:
        del self._kept[topic, key]
        self._bytes -= KEY_OVERHEAD + len(topic) + len(key) + len(position)


class _Topic:
    __slots__ = ("entries", "dropped_upto")

    def __init__(self) -> None:
        self.entries: deque[_Kept] = deque()
        self.dropped_upto = 0  # the newest sequence number this topic let go


class MemoryLog:
    """A capped, in-process log; positions are decimal sequence numbers.

    The log keeps at most ``log_retention`` entries and ``max_bytes`` of
    them, so that whoever may publish cannot make the process keep more than
    that; each topic's history is a view of it, cut further to the topic's
    own retention.  The idempotency keys of publishes are remembered beside it, bounded in count and in
    ``idempotency_bytes``.
    """

    def __init__(self, name: str = "log", *, retention: Retention = DEFAULT_RETENTION,
                 log_retention: int = DEFAULT_LOG_RETENTION, max_bytes: int = DEFAULT_MAX_BYTES,
                 idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
                 idempotency_keys: int = DEFAULT_IDEMPOTENCY_KEYS, idempotency_bytes: int = IDEMPOTENCY_BYTES):
        self.name = name
        self.retention = retention_of(retention)
        self.log_retention = log_retention
        self.max_bytes = max_bytes
        self._entries: deque[_Kept] = deque()
        self._topics: dict[str, _Topic] = {}
        self._trimmed_upto = 0  # the newest sequence number the log let go
        self._bytes = 0
        self._seq = 0
        self._keys = _Keys(idempotency_window, idempotency_keys, idempotency_bytes)
        self._cond = threading.Condition()

    appends = None  # an append is a moment under a lock: nothing to batch

    def append(self, topic: str, item: Any) -> str:
        return self.append_json(topic, dumped(item))

    def append_json(self, topic: str, raw: bytes, key: str | None = None) -> str:
        raw = exact(raw)  # kept: at its own size
        with self._cond:
            if key is not None:
                now = time.monotonic()
                found = self._keys.find(topic, key, now)
                if found is not None:
                    return found
                self._keys.remember(topic, key, str(self._seq + 1), now)
            self._seq += 1
            kept = (self._seq, topic, raw)
            self._entries.append(kept)
            self._bytes += len(raw)
            history = self._topics.get(topic)
            if history is None:
                history = self._topics[topic] = _Topic()
            history.entries.append(kept)
            if len(history.entries) > self.retention(topic):
                history.dropped_upto = history.entries.popleft()[0]
            while len(self._entries) > self.log_retention or (self._bytes > self.max_bytes and len(self._entries) > 1):
                self._let_go(self._entries.popleft())
            self._cond.notify_all()
            return str(self._seq)

    def _let_go(self, kept: _Kept) -> None:
        """Under the lock: the log's oldest entry goes, and with it from its topic's history if still there."""
        seq, topic, raw = kept
        self._bytes -= len(raw)
        self._trimmed_upto = seq
        history = self._topics.get(topic)
        if history is not None and history.entries and history.entries[0] is kept:
            history.entries.popleft()
            history.dropped_upto = seq
            if not history.entries:
                del self._topics[topic]  # anyone can make topics: keep none that hold nothing

    def tail(self) -> str:
        return str(self._seq)

    def read(self, after: str, block: float, count: int = 1000) -> list[Entry]:
        with self._cond:
            if self._seq <= int(after) and block > 0:
                self._cond.wait(block)
            return self._slice(int(after), count)

    def _slice(self, after: int, count: int) -> list[Entry]:
        if not self._entries or self._seq <= after:
            return []
        first = self._entries[0][0]  # sequence numbers are contiguous from here
        index = max(0, after + 1 - first)  # entries before `first` were trimmed
        end = min(len(self._entries), index + count)
        return [Entry(str(seq), topic, raw) for seq, topic, raw in (self._entries[i] for i in range(index, end))]

    def topic_range(self, topics: tuple[str, ...], after: str, upto: str, count: int = 1000) -> list[Entry]:
        low, high = int(after), int(upto)
        found = []
        with self._cond:
            for topic in topics:
                history = self._topics.get(topic)
                for kept in reversed(history.entries if history is not None else ()):  # resumes are near the end
                    if kept[0] <= low:
                        break
                    if kept[0] <= high:
                        found.append(kept)
        found.sort(key=lambda kept: kept[0])
        return [Entry(str(seq), topic, raw) for seq, topic, raw in found[:count]]

    def newest(self, topic: str, count: int, upto: str) -> list[Entry]:
        high = int(upto)
        with self._cond:
            history = self._topics.get(topic)
            kept = [k for k in history.entries if k[0] <= high][-count:] if history is not None and count else []
        return [Entry(str(seq), topic, raw) for seq, topic, raw in kept]

    def trimmed_after(self, topic: str, position: str) -> bool:
        after = order(position)[0]
        with self._cond:
            history = self._topics.get(topic)
            if history is not None:
                return history.dropped_upto > after
            return self._trimmed_upto > after  # nothing of it left: it may have had entries the log let go

    def epoch(self) -> str:
        return "memory"  # it lives and dies with the process, and its sessions with it

    def wake(self) -> None:
        """Release a blocked read (the hub is stopping)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        self.wake()


class MemoryBackend:
    """Logs in this process; no session store (sessions cannot outlive the process anyway)."""

    kind = "memory"
    sessions: SessionStore | None = None

    def __init__(self, prefix: str = "longpoll:"):
        self.prefix = prefix
        self._secrets: dict[str, bytes] = {}

    def build(self, *, memory: Callable[[], Any], redis: Callable[[Any], Any]) -> Any:
        return memory()

    def secret(self, name: str, make: bool = True) -> bytes | None:
        """This process's own: what it signs ends with it."""
        if make:
            return self._secrets.setdefault(name, secrets.token_bytes(32))
        return self._secrets.get(name)

    def log(self, name: str = "log", *, retention: Retention = DEFAULT_RETENTION,
            log_retention: int = DEFAULT_LOG_RETENTION, topic_ttl: float | None = None,
            idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
            idempotency_keys: int = DEFAULT_IDEMPOTENCY_KEYS) -> MemoryLog:
        return MemoryLog(name, retention=retention, log_retention=log_retention,
                         idempotency_window=idempotency_window, idempotency_keys=idempotency_keys)

    def close(self) -> None:
        pass
