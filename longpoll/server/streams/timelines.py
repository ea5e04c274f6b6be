"""Timelines kept in memory, and the worker that fans statuses out to them.

``ZSet`` is the embedded store's sorted set, with the few Redis sorted-set
operations the book's listings use, so that both stores run the same steps.

``Syndicator`` is the book's ``execute_later`` for ``syndicate_status``: one
thread per process takes jobs from the store's queue, one bounded pass at a
time, so posting returns at once however many followers the author has, and
several processes on one Redis share the work (each pass is atomic there).
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import Any

from ... import LongPollError, Worker, attach, track

log = logging.getLogger("longpoll")


class ZSet:
    """Members (ints) ordered by score, ties by member."""

    __slots__ = ("_items", "_scores")

    def __init__(self) -> None:
        self._items: list[tuple[float, int]] = []
        self._scores: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, member: int) -> bool:
        return member in self._scores

    def add(self, member: int, score: float) -> None:
        self.remove(member)
        bisect.insort(self._items, (score, member))
        self._scores[member] = score

    def remove(self, member: int) -> bool:
        score = self._scores.pop(member, None)
        if score is None:
            return False
        del self._items[bisect.bisect_left(self._items, (score, member))]
        return True

    def score(self, member: int) -> float | None:
        return self._scores.get(member)

    def top(self) -> float | None:
        return self._items[-1][0] if self._items else None

    def stamp(self, now: float) -> float:
        """A score for a new member: now, or just above the highest one (scores stay unique)."""
        top = self.top()
        return now if top is None or top < now else top + 1

    def newest(self, start: int, stop: int) -> list[int]:
        """Members by rank from the highest score, start to stop inclusive (ZREVRANGE)."""
        n = len(self._items)
        return [self._items[n - 1 - i][1] for i in range(max(start, 0), min(stop + 1, n))]

    def below(self, score: float | None, count: int) -> list[tuple[int, float]]:
        """Up to count (member, score) with a score below ``score`` (None: any), highest first."""
        end = len(self._items) if score is None else bisect.bisect_left(self._items, (score,))
        return [(m, s) for s, m in reversed(self._items[max(0, end - count):end])]

    def above(self, score: float, count: int) -> list[tuple[int, float]]:
        """Up to count (member, score) with a score above ``score``, lowest first."""
        start = bisect.bisect_right(self._items, (score, float("inf")))
        return [(m, s) for s, m in self._items[start:start + count]]

    def trim(self, keep: int) -> None:
        """Keep the ``keep`` highest scores (ZREMRANGEBYRANK key 0 -keep-1)."""
        for _, member in self._items[:max(0, len(self._items) - keep)]:
            del self._scores[member]
        del self._items[:max(0, len(self._items) - keep)]


class Syndicator:
    """Runs the store's syndication jobs on a thread that runs with the engine's longpoll plugin.

    It is attached on first use (:meth:`ensure`, at the first post or
    delete), not when made: constructors leave the engine alone.
    """

    def __init__(self, store: Any):
        self.store = store
        self.passes = 0
        self.errors = 0
        self._worker = Worker("longpoll-syndicator", self._step, failed=self._failed)
        self._attached = False
        track(self)

    def ensure(self) -> None:
        if not self._attached:
            self._attached = True
            attach(self)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def _step(self) -> None:
        if self.store.syndicate_pass():
            self.passes += 1
            time.sleep(0)  # let request threads have the GIL between passes (the embedded store's are Python)
        else:
            self.store.wait_for_jobs(1.0)

    def _failed(self, exc: BaseException, failures: int) -> None:
        """Redis away, or a bug: the worker outlives both."""
        self.errors += 1
        if failures == 1 and not isinstance(exc, LongPollError):
            log.exception("syndication pass failed", exc_info=exc)

    def stats(self) -> dict[str, int]:
        return {"syndication_passes": self.passes, "syndication_errors": self.errors}
