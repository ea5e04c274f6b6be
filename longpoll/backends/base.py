"""What a backend provides, so the hub and the tests can use either one.

A backend is a *log*: items appended under a topic, each at a position, read
in one order by every server process from wherever it left off.  (The status
streams add a *store* for users and statuses; see ``streams/``.)
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol


class Entry(NamedTuple):
    position: str
    topic: str
    raw: bytes  # JSON text: the hub decodes, and counts what does not decode


class Log(Protocol):
    def append(self, topic: str, item: Any) -> str:
        """Append a JSON-able item; return its position."""

    def tail(self) -> str:
        """The position of the newest entry: reading after it waits for new ones."""

    def read(self, after: str, block: float, count: int = 1000) -> list[Entry]:
        """Entries after a position, waiting up to block seconds for one.

        Raises BackendUnavailable when the backend cannot be reached.
        """

    def range(self, after: str, upto: str, count: int = 1000) -> list[Entry]:
        """Up to count entries with after < position <= upto, oldest first (no waiting)."""

    def trimmed_after(self, position: str) -> bool:
        """Whether entries after ``position`` were let go (retention) or lost: replaying from it has a gap."""

    def epoch(self) -> str:
        """Names this log's life: it changes when the backend lost the log (a restart without persistence)."""

    def wake(self) -> None:
        """Cut a blocked read short."""

    def close(self) -> None: ...
