"""The Redis backend: one Redis Stream as the log every server process reads.

Each entry is ``{t: topic, d: JSON}`` in the stream ``longpoll:log``, trimmed
to about ``retention`` entries with ``XADD MAXLEN ~``.  Stream IDs are the
positions: a reader that was cut off continues with ``XREAD`` after the last
ID it handled, so nothing published meanwhile is lost (unlike pub/sub).

redis-py errors never leave this module raw: a connection or timeout error
becomes :class:`~longpoll.errors.BackendUnavailable` (503 with Retry-After).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from ..errors import BackendUnavailable, BadRequest
from . import STREAM, sentinel
from .base import Entry

EPOCH_KEY = "longpoll:epoch"
"""Changes when Redis loses its data; hubs and session stores compare it to tell (gaps, not silence)."""

RETRY = Retry(EqualJitterBackoff(cap=0.1, base=0.01), 1)
"""One quick retry (a pooled connection gone stale after a Redis restart), then 503:
redis-py's default of 10 retries would hold a publisher for seconds."""


def connect(url: str, max_connections: int = 64) -> redis.Redis:
    """A client whose pool waits (briefly) for a free connection rather than opening thousands.

    ``redis://``, ``rediss://`` and ``unix://`` URLs as redis-py reads them;
    ``redis+sentinel://host:port[,host:port...]/service[/db]`` for a primary
    that Sentinel fails over (see :mod:`.sentinel`).
    """
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, "health_check_interval": 15,
                               "retry": RETRY}
    if sentinel.is_url(url):
        return sentinel.connect(url, max_connections, **options)
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5, **options)
    return redis.Redis(connection_pool=pool)


def check_url(url: str) -> str:
    """The URL if :func:`connect` can use it; ValueError saying why not (before anything connects)."""
    if sentinel.is_url(url):
        sentinel.parse(url)
    else:
        redis.connection.parse_url(url)
    return url


@contextmanager
def unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BackendUnavailable(f"Redis is unreachable ({type(exc).__name__})") from None
    except redis.ResponseError as exc:
        if "LOADING" in str(exc) or "BUSY" in str(exc):  # Redis restarting, or a script stuck
            raise BackendUnavailable("Redis is not ready yet") from None
        raise


class RedisLog:
    def __init__(self, client: redis.Redis, retention: int = 100_000, stream: str = STREAM):
        self.client = client
        self.retention = retention
        self.stream = stream

    def append(self, topic: str, item: Any) -> str:
        try:
            raw = orjson.dumps(item)
        except TypeError as exc:
            raise BadRequest(f"item is not JSON: {exc}") from None
        with unavailable_as_503():
            position = self.client.xadd(self.stream, {"t": topic, "d": raw},
                                        maxlen=self.retention, approximate=True)
        return position.decode()

    def tail(self) -> str:
        with unavailable_as_503():
            newest = self.client.xrevrange(self.stream, count=1)
        return newest[0][0].decode() if newest else "0-0"

    def read(self, after: str, block: float, count: int = 1000) -> list[Entry]:
        with unavailable_as_503():
            answer = self.client.xread({self.stream: after}, count=count,
                                       block=max(1, int(block * 1000)) if block > 0 else None)
        return [_entry(position, fields) for _stream, items in answer or [] for position, fields in items]

    def range(self, after: str, upto: str, count: int = 1000) -> list[Entry]:
        with unavailable_as_503():
            items = self.client.xrange(self.stream, min=f"({after}", max=upto, count=count)
        return [_entry(position, fields) for position, fields in items]

    def trimmed_after(self, position: str) -> bool:
        """Trimming takes the oldest entries: once the stream's first entry is newer than ``position`` (an
        entry a reader took), what followed it may be gone (said even when the very next entry happens to
        be the first one left: a gap too many is harmless, one too few is silent loss).  A stream gone
        altogether, or emptied, has lost whatever was added after ``position``."""
        with unavailable_as_503():
            try:
                info = self.client.xinfo_stream(self.stream)
            except redis.ResponseError:  # no such key: Redis lost its data, or nothing was ever added
                return position not in ("0", "0-0")
        first = info.get("first-entry")
        if not first:
            return _order(_text(info["last-generated-id"])) > _order(position)
        if position in ("0", "0-0"):
            return int(info.get("entries-added", 0)) > int(info["length"])
        return _order(_text(first[0])) > _order(position)

    def epoch(self) -> str:
        """A random name kept in Redis beside the log: gone, and made anew, when Redis lost its data."""
        with unavailable_as_503():
            self.client.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
            value = self.client.get(EPOCH_KEY)
        return value.decode() if value else ""

    def wake(self) -> None:
        """Nothing to do: a blocked XREAD returns within its block time."""

    def close(self) -> None:
        self.client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _order(position: str) -> tuple[int, ...]:
    return tuple(int(part) for part in position.split("-"))


def _entry(position: bytes, fields: dict[bytes, bytes]) -> Entry:
    """An entry whatever a stray writer put in the stream: bad ones decode to b"" and are counted."""
    return Entry(position.decode(), fields.get(b"t", b"").decode("utf-8", "replace"), fields.get(b"d", b""))
