"""The iterator behind a status-stream session, and how it resumes elsewhere.

A feed subscribes at the hub when it is made, so the position it starts from
is known at once.  A feed resumed at a position (its session moved to another
process, or the process restarted) first replays the log from that position
up to where its hub subscription begins, through the same filter, and then
continues live: every matching status once, none skipped, none twice.

``definition`` is what the session store keeps to rebuild the feed: the
stream kind and the client's own parameters, parsed again on the way back.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import orjson

from ..broker import Broker
from ..signals import GAP
from .store import TOPIC

log = logging.getLogger("longpoll")

PAGE = 1000


def delivered(flt: Any, item: Any) -> Any:
    """What a session with this filter gets for this log item (None: nothing).

    The naive check of the book, which the hub's indexed router is proven
    (by property tests) to agree with; fine for one session's catch-up.
    """
    if not isinstance(item, dict) or not flt.check(item):
        return None
    return {"id": item["id"], "deleted": True} if item.get("deleted") else item


class StatusFeed:
    def __init__(self, broker: Broker, flt: Any, definition: dict[str, Any], after: str | None = None):
        self.definition = definition
        self.sub = broker.subscribe(TOPIC, flt)
        self.position = after if after is not None else self.sub.start
        self._catchup: deque[tuple[str, Any]] | None = None  # only a resumed session replays
        # This process's hub may be behind the one that served the session so
        # far: live items up to `after` were delivered already.
        self._floor = order(after) if after is not None else None
        if after is not None:
            try:
                self._replay(broker, flt, after)
            except BaseException:
                self.sub.close()
                raise

    def _replay(self, broker: Broker, flt: Any, after: str) -> None:
        self._catchup = catchup = deque()
        if broker.log.trimmed_after(after):  # the log no longer reaches back to where this session was
            catchup.append((after, GAP))
        upto = self.sub.start if self.sub.start is not None else broker.log.tail()
        while True:
            entries = broker.log.range(after, upto, PAGE)
            for entry in entries:
                if entry.topic != TOPIC:
                    continue
                try:
                    item = delivered(flt, orjson.loads(entry.raw))
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue  # malformed: the live hub counts these; do not count twice
                if item is not None:
                    catchup.append((entry.position, item))
                    if len(catchup) > self.sub.maxlen:  # the same bound as the live buffer
                        catchup.popleft()
                        self.sub.dropped += 1
            if len(entries) < PAGE:
                return
            after = entries[-1].position

    @property
    def dropped(self) -> int:
        return self.sub.dropped

    def __iter__(self) -> StatusFeed:
        return self

    def __next__(self) -> Any:
        while True:
            taken = self._catchup.popleft() if self._catchup else self.sub.take()
            if taken is None:
                return self.sub  # nothing yet: the session waits on the subscription
            position, item = taken
            if item is GAP:
                return GAP
            if self._floor is not None:
                if order(position) <= self._floor:
                    continue
                self._floor = None
            self.position = position
            return item

    def close(self) -> None:
        self.sub.close()


def order(position: str) -> tuple[int, ...]:
    """Positions compare as numbers: "12" (in-process log) or "1700000000000-3" (stream IDs)."""
    return tuple(int(part) for part in position.split("-"))
