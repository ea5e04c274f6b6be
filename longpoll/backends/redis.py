"""The Redis backend: logs as Redis Streams, sessions as hashes, every key under one prefix.

A log named ``log`` is the stream ``<prefix>log`` that every hub reads, and
beside it one stream per topic, ``<prefix>log:<topic>``, holding the same
entries under the same IDs (one script writes both), each trimmed to its
topic's retention with ``XADD MAXLEN ~``.  Stream IDs are the positions: a
reader that was cut off continues with ``XREAD`` after the last ID it
handled, so nothing published meanwhile is lost (unlike pub/sub), and a feed
resumed anywhere replays its own topic's stream.

Every key this module (and the code above it) writes starts with the
backend's prefix, ``longpoll:`` by default, so an app can share its Redis
database; every script names the keys it touches in ``KEYS``.

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
from . import sentinel
from .base import DEFAULT_LOG_RETENTION, DEFAULT_RETENTION, Entry, Retention, order, retention_of

RETRY = Retry(EqualJitterBackoff(cap=0.1, base=0.01), 1)
"""One quick retry (a pooled connection gone stale after a Redis restart), then 503:
redis-py's default of 10 retries would hold a publisher for seconds."""

APPEND_LUA = """
local function log_append(log, topic_stream, log_len, topic_len, ttl, topic, data)
  local id = redis.call('XADD', log, 'MAXLEN', '~', log_len, '*', 't', topic, 'd', data)
  redis.call('XADD', topic_stream, 'MAXLEN', '~', topic_len, id, 'd', data)
  if tonumber(ttl) > 0 then redis.call('PEXPIRE', topic_stream, ttl) end
  return id
end
"""
"""Appending to a log, for any script that appends as one step with writes of its own (the status store's):
the log's stream and the topic's, the same ID in both.  ``RedisLog.keys()`` and ``RedisLog.args()`` give a
script what it passes."""

APPEND = APPEND_LUA + "return log_append(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"


def _quiet_handshake() -> dict[str, Any]:
    """redis-py 8 pipelines a new connection's handshake and, with a health check interval, reads the first
    refusal in it as the next PING's answer, failing the command.  A Redis before 7.2 refuses ``CLIENT SETINFO``
    and one before 8 ``CLIENT MAINT_NOTIFICATIONS`` (Redis Enterprise's maintenance notices, which a
    self-hosted Redis never sends): ask for neither."""
    try:
        from redis.driver_info import DriverInfo  # noqa: F401  (redis-py 7.1 and later name the library so)
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # an older redis-py reads each handshake reply in turn
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": None, "maint_notifications_config": MaintNotificationsConfig(enabled=False)}


QUIET_HANDSHAKE = _quiet_handshake()


def connect(url: str, max_connections: int = 64) -> redis.Redis:
    """A client whose pool waits (briefly) for a free connection rather than opening thousands.

    ``redis://``, ``rediss://`` and ``unix://`` URLs as redis-py reads them;
    ``redis+sentinel://host:port[,host:port...]/service[/db]`` for a primary
    that Sentinel fails over (see :mod:`.sentinel`).
    """
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, "health_check_interval": 15,
                               "retry": RETRY, **QUIET_HANDSHAKE}
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
    def __init__(self, client: redis.Redis, prefix: str, name: str = "log", *,
                 retention: Retention = DEFAULT_RETENTION, log_retention: int = DEFAULT_LOG_RETENTION,
                 topic_ttl: float | None = None):
        self.client = client
        self.name = name
        self.stream = prefix + name
        self.epoch_key = prefix + "epoch"
        self.retention = retention_of(retention)
        self.log_retention = log_retention
        self.topic_ttl_ms = int(topic_ttl * 1000) if topic_ttl else 0
        self._append = client.register_script(APPEND)

    def topic_stream(self, topic: str) -> str:
        return f"{self.stream}:{topic}"

    def keys(self, topic: str) -> list[str]:
        """What a script appending to this log names in KEYS, in APPEND_LUA's order."""
        return [self.stream, self.topic_stream(topic)]

    def args(self, topic: str) -> list[Any]:
        """What it passes to ``log_append`` after the keys: the lengths, the topic's TTL and the topic."""
        return [self.log_retention, self.retention(topic), self.topic_ttl_ms, topic]

    def append(self, topic: str, item: Any) -> str:
        try:
            raw = orjson.dumps(item)
        except TypeError as exc:
            raise BadRequest(f"item is not JSON: {exc}") from None
        with unavailable_as_503():
            position = self._append(keys=self.keys(topic), args=[*self.args(topic), raw])
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

    def topic_range(self, topics: tuple[str, ...], after: str, upto: str, count: int = 1000) -> list[Entry]:
        with unavailable_as_503():
            found = [_entry(position, fields, topic) for topic in topics
                     for position, fields in self.client.xrange(self.topic_stream(topic), min=f"({after}",
                                                                 max=upto, count=count)]
        if len(topics) > 1:
            found.sort(key=lambda entry: order(entry.position))
        return found[:count]

    def newest(self, topic: str, count: int, upto: str) -> list[Entry]:
        if not count:
            return []
        with unavailable_as_503():
            items = self.client.xrevrange(self.topic_stream(topic), max=upto, count=count)
        return [_entry(position, fields, topic) for position, fields in reversed(items)]

    def trimmed_after(self, topic: str, position: str) -> bool:
        """Trimming takes a stream's oldest entries: once the topic's first entry is newer than ``position``
        and the stream has let entries go, what followed the position may be gone (said even when the very
        next entry happens to be the first one left: a gap too many is harmless, one too few is silent loss).
        A topic's stream that is gone lost nothing this log can tell of: a topic nobody published to has
        none, and a Redis that lost its data is told by the epoch (the hub's and the session store's)."""
        with unavailable_as_503():
            try:
                info = self.client.xinfo_stream(self.topic_stream(topic))
            except redis.ResponseError:  # no such key
                return False
        if int(info.get("entries-added", 0)) <= int(info["length"]):
            return False  # nothing let go
        first = info.get("first-entry")
        oldest = _text(first[0]) if first else _text(info["last-generated-id"])
        return order(oldest) > order(position)

    def epoch(self) -> str:
        """A random name kept in Redis beside the log: gone, and made anew, when Redis lost its data."""
        with unavailable_as_503():
            self.client.set(self.epoch_key, secrets.token_hex(8), nx=True)
            value = self.client.get(self.epoch_key)
        return value.decode() if value else ""

    def wake(self) -> None:
        """Nothing to do: a blocked XREAD returns within its block time."""

    def close(self) -> None:
        pass  # the client is the backend's


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(position: bytes, fields: dict[bytes, bytes], topic: str | None = None) -> Entry:
    """An entry whatever a stray writer put in the stream: bad ones decode to b"" and are counted."""
    return Entry(position.decode(), topic if topic is not None else fields.get(b"t", b"").decode("utf-8", "replace"),
                 fields.get(b"d", b""))


class RedisBackend:
    """One Redis client (and its pool) for the logs, the session store and the release channel."""

    kind = "redis"

    def __init__(self, url: str, prefix: str = "longpoll:"):
        from .store import RedisSessionStore

        self.url = check_url(url)
        self.prefix = prefix
        self.redis = connect(url)
        self.sessions = RedisSessionStore(self.redis, prefix)

    def log(self, name: str = "log", *, retention: Retention = DEFAULT_RETENTION,
            log_retention: int = DEFAULT_LOG_RETENTION, topic_ttl: float | None = None) -> RedisLog:
        return RedisLog(self.redis, self.prefix, name, retention=retention, log_retention=log_retention,
                        topic_ttl=topic_ttl)

    def close(self) -> None:
        self.redis.close()
        self.redis.connection_pool.disconnect()  # a pool given to the client is not closed with it
