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

Its client, and what redis-py's errors become, is ``connection.py``'s.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import redis

from ..errors import BackendUnavailable
from .base import (
    DEFAULT_IDEMPOTENCY_KEYS,
    DEFAULT_IDEMPOTENCY_WINDOW,
    DEFAULT_LOG_RETENTION,
    DEFAULT_RETENTION,
    Entry,
    Retention,
    dumped,
    order,
    retention_of,
)
from .connection import check_url, connect, queued, unavailable_as_503
from .store import RedisSessionStore, new_epoch

APPEND_LUA = """
local function log_append(log, topic_stream, log_len, topic_len, ttl, topic, data)
  local id = redis.call('XADD', log, 'MAXLEN', '~', log_len, '*', 't', topic, 'd', data)
  redis.call('XADD', topic_stream, 'MAXLEN', '~', topic_len, id, 'd', data)
  if tonumber(ttl) > 0 then redis.call('PEXPIRE', topic_stream, ttl) end
  return id
end
"""
"""Appending to a log, for any script that appends as one step with writes of its own (``RedisLog.script``):
the log's stream and the topic's, the same ID in both.  ``RedisLog.keys()`` and ``RedisLog.args()`` give a
script what it passes."""

APPEND = APPEND_LUA + "return log_append(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"

APPEND_ONCE = APPEND_LUA + """
local member, window, most = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ends = redis.call('ZSCORE', KEYS[4], member)
if ends and tonumber(ends) > now then
  local found = redis.call('HGET', KEYS[3], member)
  if found then return found end
end
local ended = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
if #ended > 0 then
  redis.call('ZREM', KEYS[4], unpack(ended))
  redis.call('HDEL', KEYS[3], unpack(ended))
end
local id = log_append(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[3], member, id)
redis.call('ZADD', KEYS[4], now + window, member)
local over = redis.call('ZCARD', KEYS[4]) - most
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[4], over)
  for i = 1, #popped, 2 do redis.call('HDEL', KEYS[3], popped[i]) end
end
redis.call('PEXPIRE', KEYS[3], window)
redis.call('PEXPIRE', KEYS[4], window)
return id
"""
"""An append with an idempotency key, decided in Redis for every process: a key the log remembers (its hash,
``<log>-idempotency``, key -> position) answers the position it first got and appends nothing; otherwise the
append is made and the key remembered until its window ends (the sorted set ``<log>-idempotency-ends``, by
when), or until more than the log's count of keys pushes the oldest out.  A keyed publish costs this one script
call, as an unkeyed one costs APPEND's."""


class RedisLog:
    def __init__(self, client: redis.Redis, prefix: str, name: str = "log", *,
                 retention: Retention = DEFAULT_RETENTION, log_retention: int = DEFAULT_LOG_RETENTION,
                 topic_ttl: float | None = None, idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
                 idempotency_keys: int = DEFAULT_IDEMPOTENCY_KEYS):
        self.client = client
        self.name = name
        self.stream = prefix + name
        self.epoch_key = prefix + "epoch"
        self.retention = retention_of(retention)
        self.log_retention = log_retention
        self.topic_ttl_ms = int(topic_ttl * 1000) if topic_ttl else 0
        self.idempotency = [self.stream + "-idempotency", self.stream + "-idempotency-ends"]
        self.idempotency_args = [max(1, int(idempotency_window * 1000)), idempotency_keys]
        self._append = client.register_script(APPEND)
        self._append_once = client.register_script(APPEND_ONCE)
        self.appends = self  # publishes batched: see many()

    def topic_stream(self, topic: str) -> str:
        return f"{self.stream}:{topic}"

    def script(self, body: str) -> Any:
        """A Lua script of an app's own that appends to this log in the same step as its own writes (a
        record stored and published at once): ``body`` calls ``log_append(log, topic_stream, log_len,
        topic_len, ttl, topic, data)``, given this log's :attr:`stream` and :meth:`topic_stream` among its
        KEYS and :meth:`args` among its ARGV, and gets the entry's position."""
        return self.client.register_script(APPEND_LUA + body)

    def keys(self, topic: str) -> list[str]:
        """What a script appending to this log names in KEYS, in APPEND_LUA's order."""
        return [self.stream, self.topic_stream(topic)]

    def args(self, topic: str) -> list[Any]:
        """What it passes to ``log_append`` after the keys: the lengths, the topic's TTL and the topic."""
        return [self.log_retention, self.retention(topic), self.topic_ttl_ms, topic]

    def append(self, topic: str, item: Any) -> str:
        return self.append_json(topic, dumped(item))

    def append_json(self, topic: str, raw: bytes, key: str | None = None) -> str:
        with unavailable_as_503():
            position = self._appending(topic, raw, key)
        return _text(position)

    def _appending(self, topic: str, raw: bytes, key: str | None, pipe: Any = None) -> Any:
        """The append's position, or with ``pipe`` the append queued on it."""
        if key is None:
            script, keys, args = self._append, self.keys(topic), [*self.args(topic), raw]
        else:
            member = f"{len(topic)}:{topic}{key}"  # the topic's length first: no two (topic, key) pairs make one
            script, keys = self._append_once, [*self.keys(topic), *self.idempotency]
            args = [*self.args(topic), raw, member, *self.idempotency_args]
        if pipe is None:
            return script(keys=keys, args=args)
        return queued(pipe, script, keys, args)

    def many(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """``append_json`` calls as one pipeline (``appends``): what an event loop's publishes of one moment
        cost is one round trip, keyed or not."""
        pipe = self.client.pipeline(transaction=False)
        for _append_json, topic, raw, *key in calls:
            self._appending(topic, raw, key[0] if key else None, pipe)
        with unavailable_as_503():
            answers = pipe.execute(raise_on_error=False)
        return [_answered(answer) for answer in answers]

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
            self.client.set(self.epoch_key, new_epoch(), nx=True)
            value = self.client.get(self.epoch_key)
        return value.decode() if value else ""

    def wake(self) -> None:
        """Nothing to do: a blocked XREAD returns within its block time."""

    def close(self) -> None:
        pass  # the client is the backend's


def _answered(answer: Any) -> Any:
    """A pipelined append's position, or the error to raise for it (as ``unavailable_as_503`` says)."""
    if isinstance(answer, redis.ResponseError) and ("LOADING" in str(answer) or "BUSY" in str(answer)):
        return BackendUnavailable("Redis is not ready yet")
    return answer.decode() if isinstance(answer, bytes) else answer


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
        self.url = check_url(url)
        self.prefix = prefix
        self.redis = connect(url)
        self.sessions = RedisSessionStore(self.redis, prefix)

    def log(self, name: str = "log", *, retention: Retention = DEFAULT_RETENTION,
            log_retention: int = DEFAULT_LOG_RETENTION, topic_ttl: float | None = None,
            idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
            idempotency_keys: int = DEFAULT_IDEMPOTENCY_KEYS) -> RedisLog:
        return RedisLog(self.redis, self.prefix, name, retention=retention, log_retention=log_retention,
                        topic_ttl=topic_ttl, idempotency_window=idempotency_window,
                        idempotency_keys=idempotency_keys)

    def build(self, *, memory: Callable[[], Any], redis: Callable[[Any], Any]) -> Any:
        return redis(self.redis)

    def secret(self, name: str, make: bool = True) -> bytes | None:
        """Kept in Redis beside the data it guards (``<prefix><name>-secret``): the first process to need one
        makes it, and every process reads the same; deleting the key revokes what it signed."""
        key = f"{self.prefix}{name}-secret"
        with unavailable_as_503():
            if not make:
                found: bytes | None = self.redis.get(key)
                return found
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(key, secrets.token_bytes(32), nx=True)
            pipe.get(key)
            made: bytes = pipe.execute()[1]
        return made

    def close(self) -> None:
        self.redis.close()
        self.redis.connection_pool.disconnect()  # a pool given to the client is not closed with it
