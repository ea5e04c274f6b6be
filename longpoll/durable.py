"""Session state kept in Redis, so a session outlives the process serving it.

What is kept is what it takes to carry on anywhere: the iterator's
definition and its position after the last batch, the cursors and the last
(possibly unacknowledged) batch, under ``session:<key>`` with a TTL of the
idle timeout, refreshed by every poll.  A process's registry is then only a
cache of live generators: a poll whose key it lacks, or holds at an older
batch than Redis does, rebuilds the generator from here and continues.

Writes are compare-and-set on the batch number, so two processes answering
polls of one session at the same moment cannot both commit a batch: the loser
answers 409 and its client polls again.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
import redis

from .backends.redis import unavailable_as_503

LOAD = """
local state = redis.call('HGET', KEYS[1], 'state')
if state then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return state
"""

SAVE = """
local current = redis.call('HGET', KEYS[1], 'seq')
if current and tonumber(current) ~= tonumber(ARGV[1]) then return 0 end
if not current and tonumber(ARGV[1]) >= 0 then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'state', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


class SessionStore(Protocol):
    def load(self, key: str) -> dict[str, Any] | None:
        """The session's state (and its TTL refreshed), or None if unknown or expired."""

    def save(self, key: str, state: dict[str, Any], expected_seq: int) -> bool:
        """Store state if the stored batch number is still expected_seq (-1: not stored yet)."""

    def delete(self, key: str) -> None: ...


class RedisSessionStore:
    def __init__(self, client: redis.Redis, ttl: float, prefix: str = "session:"):
        self.client = client
        self.ttl_ms = max(1, int(ttl * 1000))
        self.prefix = prefix
        self._load = client.register_script(LOAD)
        self._save = client.register_script(SAVE)

    def load(self, key: str) -> dict[str, Any] | None:
        with unavailable_as_503():
            raw = self._load(keys=[self.prefix + key], args=[self.ttl_ms])
        return orjson.loads(raw) if raw else None

    def save(self, key: str, state: dict[str, Any], expected_seq: int) -> bool:
        with unavailable_as_503():
            return bool(self._save(keys=[self.prefix + key],
                                   args=[expected_seq, state["seq"], orjson.dumps(state), self.ttl_ms]))

    def delete(self, key: str) -> None:
        with unavailable_as_503():
            self.client.delete(self.prefix + key)
