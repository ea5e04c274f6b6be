"""What a backend provides, so that the hub, the feeds and the tests can use either one.

A backend keeps *logs* and, where sessions can outlive their process, a
*session store* (:class:`SessionStore`); :class:`Backend` is what the rest of
longpoll knows of one, whichever it is.  A backend keeps *logs*.  A log holds items appended under topics, each at a
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

import orjson

from ..errors import BadRequest

DEFAULT_RETENTION = 10_000
"""Entries each topic keeps for feeds that resume from a position or start with its newest items."""

DEFAULT_LOG_RETENTION = 100_000
"""Entries the whole log keeps for hubs that fall behind or reconnect."""

DEFAULT_IDEMPOTENCY_WINDOW = 24 * 3600.0
"""Seconds a publish's idempotency key is remembered: a retry within it stores nothing and answers the first
publish's position."""

DEFAULT_IDEMPOTENCY_KEYS = 100_000
"""Idempotency keys each log remembers at most: past it, the oldest are forgotten before their window ends, so
that whoever may publish cannot make the backend hold more."""

MAX_IDEMPOTENCY_KEY = 255
"""The longest idempotency key, in characters: what the backend holds per key stays small and bounded."""

Retention = int | Mapping[str, int] | Callable[[str], int]
"""Entries a topic keeps: one number for every topic, a mapping by name (others get the default), or a function
of the topic's name."""


class Entry(NamedTuple):
    position: str
    topic: str
    raw: bytes  # JSON text: the hub decodes, and counts what does not decode


def dumped(item: Any) -> bytes:
    """An item as the log keeps it (JSON); a 400 for what JSON cannot say."""
    try:
        return orjson.dumps(item)
    except TypeError as exc:
        raise BadRequest(f"item is not JSON: {exc}") from None


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
    appends: Any  # a waits.Batch of append_json calls as one round trip, or None where each is quick

    def append(self, topic: str, item: Any) -> str:
        """Append a JSON-able item; return its position."""

    def append_json(self, topic: str, raw: bytes, key: str | None = None) -> str:
        """Append an item given as its JSON text (encoded once, by the publisher); return its position.  With
        an idempotency ``key`` the backend already holds for the topic (within its window), append nothing and
        return the position the key's first append returned: the backend decides, for every process."""

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


TAKEN_OVER = -1
GONE = -2
OUT_OF_STEP = 0
DONE = 1
"""What a session store's writes answer (:meth:`SessionStore.commit`, ``touch``)."""

class Record(NamedTuple):
    """A stored session as a process that does not hold it reads it."""

    state: dict[str, Any]
    holder: str | None  # the process that serves it now
    lease: int  # how many times a process took it over: later takeovers count higher
    seq: int  # the batch number stored
    local: bool  # kept by the process that made it: nobody else can continue it
    since: int = 0  # when the poll that last took it over began (wall-clock µs)


Release = Callable[[str, int, int], None]
"""Called with a session's key, the lease of the process that took it over and when its poll began (µs)."""


class Worker(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class SessionStore(Protocol):
    """Where durable sessions live between polls: one record each, read when a process takes one over, and
    written once per batch, compare-and-set, by the one process that holds it."""

    @property
    def me(self) -> str:
        """This process, as the holder of the sessions it serves."""

    @property
    def listener(self) -> Worker:
        """What hears that another process took a session over (run with the engine)."""

    def read(self, key: str) -> Record | None: ...

    def claim(self, key: str, ttl: float, read: Record, since: int = 0) -> int: ...

    @property
    def writes(self) -> Any:
        """A ``waits.Batch`` of ``(commit | touch, key, ...)`` calls as one round trip."""

    def commit(self, key: str, expected: int, seq: int, state: dict[str, Any], ttl: float, lease: int = 0) -> int: ...

    def touch(self, key: str, ttl: float) -> int: ...

    def delete(self, key: str) -> None: ...

    def lost_since(self, when: float) -> bool: ...

    def keying(self) -> tuple[tuple[bytes, ...], bytes, float | None]:
        """The secrets durable keys are signed with (the first) and checked with (any), the store's epoch
        (short) and when it began."""

    def on_release(self, release: Release) -> None: ...


class Backend(Protocol):
    """A backend: its logs, its session store (None where sessions live and die with the process), and the
    secrets the app signs with, shared by every process of the deployment."""

    @property
    def kind(self) -> str:
        """``"memory"``, ``"redis"``: for people and counters; nothing branches on it."""

    @property
    def prefix(self) -> str: ...

    @property
    def sessions(self) -> SessionStore | None: ...

    def build(self, *, memory: Callable[[], Any], redis: Callable[[Any], Any]) -> Any:
        """What the app keeps on this backend, made the backend's way: ``memory()`` in this process, or
        ``redis(client)`` with the backend's Redis client (for an app's own data beside longpoll's)."""

    def log(self, name: str = "log", *, retention: Retention = DEFAULT_RETENTION,
            log_retention: int = DEFAULT_LOG_RETENTION, topic_ttl: float | None = None,
            idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
            idempotency_keys: int = DEFAULT_IDEMPOTENCY_KEYS) -> Log: ...

    def secret(self, name: str, make: bool = True) -> bytes | None:
        """The deployment's secret called ``name`` (made when there is none and ``make``; else None)."""

    def close(self) -> None: ...
