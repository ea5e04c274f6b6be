"""Session state kept in Redis, so a session outlives the process serving it.

What is kept is what it takes to carry on anywhere: the iterator's
definition and its position after the last batch, the cursors and the last
(possibly unacknowledged) batch, under ``session:<key>``.  A process's
registry is then only a cache of live generators: a poll whose key it lacks,
or holds at an older batch than Redis does, rebuilds the generator from here
and continues.

Every poll takes a *ticket* when it loads the state (the hash's ``ticket``
counter) and marks the session ``open``.  Only the holder of the newest
ticket may commit a batch, so when a client abandons a poll and polls again
in another process, the newer poll wins; the store also tells every process
(``PUBLISH`` on the release channel) that a newer poll began while one was
open, so a poll held elsewhere answers at once instead of waiting out its
timeout.  Commits are also compare-and-set on the batch number.

If Redis loses its data (a restart without persistence), the sessions this
process still holds carry on, saved again, and tell their clients of a gap
(the epoch beside the log changed: ``backends.redis.EPOCH_KEY``).

Expiry: loading the state sets the TTL to the idle timeout plus the longest
hold, and a poll's end (a commit, or :meth:`finish`) sets it back to the idle
timeout from then.  A held poll therefore never outlives its own session.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import redis

from .backends.channel import ChannelListener
from .backends.redis import EPOCH_KEY, unavailable_as_503

RELEASE_CHANNEL = "longpoll:release"

LOAD = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[4], 'NX')
  epoch = redis.call('GET', KEYS[2])
end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {false, 0, epoch} end
local ticket = redis.call('HINCRBY', KEYS[1], 'ticket', 1)
local open = redis.call('HGET', KEYS[1], 'open')
redis.call('HSET', KEYS[1], 'open', ticket)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if open then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return {state, ticket, epoch}
"""

SAVE = """
if ARGV[2] ~= '' then
  local newest = redis.call('HGET', KEYS[1], 'ticket')
  if newest and newest ~= ARGV[2] then return -1 end
end
local current = redis.call('HGET', KEYS[1], 'seq')
if current and tonumber(current) ~= tonumber(ARGV[1]) then return 0 end
if not current and tonumber(ARGV[1]) >= 0 then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[3], 'state', ARGV[4])
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'open') == ARGV[2] then redis.call('HDEL', KEYS[1], 'open') end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

FINISH = """
if redis.call('HGET', KEYS[1], 'open') == ARGV[1] then redis.call('HDEL', KEYS[1], 'open') end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

Release = Callable[[str], None]


class SessionStore(Protocol):
    def load(self, key: str) -> tuple[dict[str, Any] | None, int | None]:
        """The session's state and this poll's ticket, or (None, None) if the key is unknown or expired."""

    def save(self, key: str, state: dict[str, Any], expected_seq: int, ticket: int | None) -> int:
        """Commit a batch: 1 done; 0 the stored batch number is not expected_seq (-1: not stored yet);
        -1 a newer poll holds the session (``ticket`` is not the newest)."""

    def finish(self, key: str, ticket: int) -> None:
        """A poll ended without a commit."""

    def delete(self, key: str) -> None: ...

    def on_release(self, release: Release) -> None:
        """Call ``release(key)`` when a newer poll of a session began anywhere."""

    def lost_since(self, when: float) -> bool:
        """Whether the store lost its data after ``when`` (time.monotonic()), as far as this process saw."""


class RedisSessionStore:
    def __init__(self, client: redis.Redis, ttl: float, prefix: str = "session:", hold: float = 65.0,
                 channel: str = RELEASE_CHANNEL):
        """``ttl`` is the idle timeout; ``hold`` the longest a poll (or stream) holds between refreshes."""
        self.client = client
        self.ttl_ms = max(1, int(ttl * 1000))
        self.hold_ms = self.ttl_ms + int(hold * 1000)
        self.prefix = prefix
        self.channel = channel
        self._load = client.register_script(LOAD)
        self._save = client.register_script(SAVE)
        self._finish = client.register_script(FINISH)
        self._releases: list[Release] = []
        self.listener: ChannelListener | None = None
        self._epoch: bytes | None = None
        self.lost_at: float | None = None

    def load(self, key: str) -> tuple[dict[str, Any] | None, int | None]:
        with unavailable_as_503():
            raw, ticket, epoch = self._load(keys=[self.prefix + key, EPOCH_KEY],
                                            args=[self.hold_ms, self.channel, key, secrets.token_hex(8)])
        self._saw(epoch)
        if not raw:
            return None, None
        return orjson.loads(raw), int(ticket)

    def _saw(self, epoch: bytes) -> None:
        if self._epoch is not None and epoch != self._epoch:
            self.lost_at = time.monotonic()  # Redis lost its data: sessions held here since then carry on
        self._epoch = epoch

    def lost_since(self, when: float) -> bool:
        return self.lost_at is not None and when < self.lost_at

    def save(self, key: str, state: dict[str, Any], expected_seq: int, ticket: int | None) -> int:
        with unavailable_as_503():
            return int(self._save(keys=[self.prefix + key],
                                  args=[expected_seq, "" if ticket is None else ticket, state["seq"],
                                        orjson.dumps(state), self.ttl_ms]))

    def finish(self, key: str, ticket: int) -> None:
        with unavailable_as_503():
            self._finish(keys=[self.prefix + key], args=[ticket, self.ttl_ms])

    def delete(self, key: str) -> None:
        with unavailable_as_503():
            self.client.delete(self.prefix + key)

    def on_release(self, release: Release) -> None:
        """Start listening for releases (once; the listener runs with the engine's longpoll plugin)."""
        self._releases.append(release)
        if self.listener is None:
            from . import plugin

            self.listener = ChannelListener(self.client, self.channel, self._released)
            plugin.current().attach(self.listener)

    def _released(self, data: bytes) -> None:
        key = data.decode("ascii", "replace")
        for release in self._releases:
            release(key)
