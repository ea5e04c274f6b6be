"""What a backend provides, so that the hub, the feeds and the tests can use either one.

A backend keeps *logs*.  A log holds items appended under topics, each at a
position; positions are one order across all the log's topics, so that
every server process reads the same sequence (the hub reads the whole log),
while each topic also keeps its own history, with its own retention, for
feeds that start from a position or with the newest items (``topic_range``,
``newest``).  On Redis the log is one stream read by every hub, beside one
stream per topic written in the same step with the same IDs.

Positions compare with :func:`order`: ``"12"`` in the embedded log,
``"1700000000000-3"`` (stream IDs) on Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

DEFAULT_RETENTION = 10_000
"""Entries each topic keeps for feeds that resume from a position or start with its newest items."""

DEFAULT_LOG_RETENTION = 100_000
"""Entries the whole log keeps for hubs that fall behind or reconnect."""

Retention = int | Mapping[str, int] | Callable[[str], int]
"""Entries a topic keeps: one number for every topic, a mapping by name (others get the default), or a function
of the topic's name."""


class Entry(NamedTuple):
    position: str
    topic: str
    raw: bytes  # JSON text: the hub decodes, and counts what does not decode


def order(position: str) -> tuple[int, ...]:
    """Positions compare as numbers: "12" (embedded log) or "1700000000000-3" (stream IDs)."""
    return tuple(int(part) for part in position.split("-"))


def retention_of(retention: Retention) -> Callable[[str], int]:
    """How many entries a topic keeps, as a function of its name."""
    if isinstance(retention, int):
        if retention < 1:
            raise ValueError("retention must be at least 1 entry")
        return lambda topic: retention
    if isinstance(retention, Mapping):
        given = dict(retention)
        if any(not isinstance(n, int) or n < 1 for n in given.values()):
            raise ValueError("every topic's retention must be at least 1 entry")
        return lambda topic: given.get(topic, DEFAULT_RETENTION)
    if callable(retention):
        return retention
    raise TypeError(f"retention must be a number, a mapping or a function, not {type(retention).__name__}")


class Log(Protocol):
    name: str

    def append(self, topic: str, item: Any) -> str:
        """Append a JSON-able item; return its position."""

    def tail(self) -> str:
        """The position of the newest entry: reading after it waits for new ones."""

    def read(self, after: str, block: float, count: int = 1000) -> list[Entry]:
        """Entries of every topic after a position, waiting up to block seconds for one.

        Raises BackendUnavailable when the backend cannot be reached.
        """

    def topic_range(self, topics: tuple[str, ...], after: str, upto: str, count: int = 1000) -> list[Entry]:
        """Up to count entries of these topics with after < position <= upto, oldest first (no waiting)."""

    def newest(self, topic: str, count: int, upto: str) -> list[Entry]:
        """The newest count entries of a topic at positions <= upto, oldest first."""

    def trimmed_after(self, topic: str, position: str) -> bool:
        """Whether entries of the topic after ``position`` were let go (retention) or lost: replaying from
        it has a gap.  A gap too many is harmless, one too few is silent loss."""

    def epoch(self) -> str:
        """Names this log's life: it changes when the backend lost the log (a restart without persistence)."""

    def wake(self) -> None:
        """Cut a blocked read short."""

    def close(self) -> None: ...
