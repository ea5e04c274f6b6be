"""Durable sessions' records in Redis, and the channel that says another process took one over.

One hash per session, ``<prefix>session:<key>``: ``state`` (the JSON of
``lifecycle.py``), ``seq`` (its batch number), ``holder`` (the process that
serves it now), ``lease`` (how many times a process took it over) and
``since`` (when the poll that took it over last began, wall-clock µs: of two
polls on two processes, the newer wins).  The
scripts below are the whole protocol's Redis side; each is one round trip:

- ``READ``: what a process that did not serve a session's last poll learns of
  it, changing nothing, so that a poll refused by the session's rules (a
  cursor it never issued) leaves the session as it was;
- ``CLAIM``: that process takes the session over, compare-and-set on the lease
  and batch number it read: it becomes the holder and, when another process
  was, says so on the release channel, so a poll held there answers at once
  and its copy is let go (unless that poll began after this one: it takes
  the session back, see ``lifecycle.py``).
- ``COMMIT``: a batch is stored, compare-and-set on the holder and its lease,
  so a process that lost the session can never overwrite it; batch numbers
  only grow, so two polls of one key in one process, committed together (a
  stream and the poll replacing it), never take each other for a takeover.  A
  session that stopped being a recipe is stored as ``local``: a process that
  loads it learns why it cannot continue it, and takes nothing over.
- ``TOUCH``: a poll that stored nothing new (it timed out, or sent a batch
  again) keeps the record alive, and learns whether it still holds it.

Expiry: every script sets the record's TTL it is given: the idle timeout
plus a small margin after a poll ends, and longer while a poll is held (the
lifecycle touches the record as a poll starts to wait, when the wait could
outlast the record).  Each script also reads the epoch key beside the logs:
when it changes, Redis lost its data, and the sessions this process holds
carry on, saved again, telling their clients of a gap.  An epoch names the
time it began (``<ms>-<random>``), so that a session Redis lost can be
rebuilt from its key for as long as it could have lived (``lifecycle.py``).

The secret that signs durable session keys and cursors (``keying``) lives in
Redis too, under ``<prefix>sessions-secret``; each process remembers it and
puts it back when Redis lost it, so keys made before the loss still verify.
A process that never knew it (started after the loss, before any process
that knew it came back) makes another; the processes that knew the old one
verify both.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from typing import Any

import orjson
import redis

from .base import Record, Release
from .channel import ChannelListener
from .connection import queued, unavailable_as_503

_EPOCH = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[#ARGV], 'NX')
  epoch = redis.call('GET', KEYS[2])
end
"""

READ = _EPOCH + """
local found = redis.call('HMGET', KEYS[1], 'state', 'holder', 'local', 'lease', 'seq', 'since')
return {found[1] or false, found[2] or '', found[3] and 1 or 0, tonumber(found[4] or '0'),
        tonumber(found[5] or '-1'), epoch, tonumber(found[6] or '0')}
"""

CLAIM = _EPOCH + """
local found = redis.call('HMGET', KEYS[1], 'holder', 'lease', 'seq', 'state')
if not found[4] then return {-2, epoch} end
if tonumber(found[2] or '0') ~= tonumber(ARGV[4]) or tonumber(found[3] or '-1') ~= tonumber(ARGV[5]) then
  return {0, epoch}  -- taken over, or committed to, since it was read
end
local lease = redis.call('HINCRBY', KEYS[1], 'lease', 1)
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'since', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if found[1] and found[1] ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[3], ARGV[6] .. ' ' .. ARGV[1] .. ' ' .. lease .. ' ' .. ARGV[7])
end
return {lease, epoch}
"""

COMMIT = _EPOCH + """
local found = redis.call('HMGET', KEYS[1], 'holder', 'seq', 'lease')
if not found[1] then
  if tonumber(ARGV[2]) >= 0 then return {-2, epoch} end
  redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'seq', ARGV[3], 'state', ARGV[4])
elseif found[1] ~= ARGV[1] or tonumber(found[3] or '0') ~= tonumber(ARGV[7]) then return {-1, epoch}
elseif tonumber(found[2]) < tonumber(ARGV[3]) then redis.call('HSET', KEYS[1], 'seq', ARGV[3], 'state', ARGV[4])
end  -- else this copy stored this batch, or a newer one, already: two polls of one key here, committed together
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'local', '1') end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, epoch}
"""

TOUCH = _EPOCH + """
local holder = redis.call('HGET', KEYS[1], 'holder')
if not holder then return {-2, epoch} end
if holder ~= ARGV[1] then return {-1, epoch} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, epoch}
"""

DELETE = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class RedisSessionStore:
    def __init__(self, client: redis.Redis, prefix: str = "longpoll:"):
        self.client = client
        self.prefix = prefix
        self.channel = prefix + "release"
        self.epoch_key = prefix + "epoch"
        self._read = client.register_script(READ)
        self._claim = client.register_script(CLAIM)
        self._commit = client.register_script(COMMIT)
        self._touch = client.register_script(TOUCH)
        self.writes = self  # commits and touches batched: see many()
        self._delete = client.register_script(DELETE)
        self._releases: list[Release] = []
        self.listener = ChannelListener(client, self.channel, self._released)
        self._epoch: bytes | None = None
        self.lost_at: float | None = None
        self._me: tuple[int, str] | None = None
        self.secret_key = prefix + "sessions-secret"
        self._secret: bytes | None = None
        self._older: tuple[bytes, ...] = ()  # secrets this process signed with before Redis took another

    @property
    def me(self) -> str:
        """This process, as the holder of the sessions it serves (made anew in a forked child)."""
        if self._me is None or self._me[0] != os.getpid():
            self._me = (os.getpid(), secrets.token_hex(6))
        return self._me[1]

    def _key(self, key: str) -> list[str]:
        return [self.prefix + "session:" + key, self.epoch_key]

    def read(self, key: str) -> Record | None:
        """The stored session, or None (unknown, expired, or lost)."""
        with unavailable_as_503():
            raw, holder, local, lease, seq, epoch, since = self._read(keys=self._key(key), args=[new_epoch()])
        self._saw(epoch)
        if not raw:
            return None
        return Record(orjson.loads(raw), holder.decode() or None, int(lease), int(seq), bool(local), int(since))

    def claim(self, key: str, ttl: float, read: Record, since: int = 0) -> int:
        """Become the session's holder if it is still as ``read``: its new lease, or 0 (it changed since:
        read it again) or GONE.  ``since``: when the claiming poll began (wall-clock µs)."""
        with unavailable_as_503():
            code, epoch = self._claim(keys=self._key(key), args=[self.me, _ms(ttl), self.channel, read.lease,
                                                                 read.seq, key, since, new_epoch()])
        self._saw(epoch)
        if code > 0 and self._secret is None:
            self.keying()  # a process that holds durable sessions remembers the secret, to put it back
        return int(code)

    def commit(self, key: str, expected: int, seq: int, state: dict[str, Any], ttl: float, lease: int = 0) -> int:
        """Store a batch: DONE, or TAKEN_OVER (another process, or a later takeover, holds it now), GONE (no
        record, when one was expected).  ``expected`` -1: a new record; ``lease``: the holder's, as it claimed
        the session (0 for the process that made it)."""
        with unavailable_as_503():
            answer = self._commit(keys=self._key(key), args=self._commit_args(expected, seq, state, ttl, lease))
        return self._ran(answer)

    def touch(self, key: str, ttl: float) -> int:
        """Keep the record alive: DONE, TAKEN_OVER or GONE."""
        with unavailable_as_503():
            answer = self._touch(keys=self._key(key), args=self._touch_args(ttl))
        return self._ran(answer)

    def many(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """``commit`` and ``touch`` calls (``(store.commit, key, ...)``, as ``writes`` batches them) as one
        pipeline: the sessions that one publish releases are stored in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for fn, key, *args in calls:
            if fn == self.commit:
                queued(pipe, self._commit, self._key(key), self._commit_args(*args))
            else:
                queued(pipe, self._touch, self._key(key), self._touch_args(*args))
        with unavailable_as_503():
            answers = pipe.execute(raise_on_error=False)
        return [answer if isinstance(answer, Exception) else self._ran(answer) for answer in answers]

    def _ran(self, answer: Any) -> int:
        code, epoch = answer
        self._saw(epoch)
        return int(code)

    def _commit_args(self, expected: int, seq: int, state: dict[str, Any], ttl: float, lease: int = 0) -> list[Any]:
        return [self.me, expected, seq, orjson.dumps(state), _ms(ttl), "1" if state.get("local") else "0", lease,
                new_epoch()]

    def _touch_args(self, ttl: float) -> list[Any]:
        return [self.me, _ms(ttl), new_epoch()]

    def delete(self, key: str) -> None:
        """The session ended here (done, failed): its record goes, unless another process holds it now."""
        with unavailable_as_503():
            self._delete(keys=self._key(key)[:1], args=[self.me])

    def _saw(self, epoch: bytes) -> None:
        if self._epoch is not None and epoch != self._epoch:
            self.lost_at = time.monotonic()  # Redis lost its data: sessions held here since then carry on
            if self._secret is not None:  # and the keys it signed must still verify, in every process
                with unavailable_as_503():
                    self.client.set(self.secret_key, self._secret, nx=True)
                    now = self.client.get(self.secret_key) or self._secret
                if now != self._secret:  # a process that never knew it made another meanwhile: both verify here
                    self._older = (self._secret, *self._older)[:4]
                    self._secret = now
        self._epoch = epoch

    def keying(self) -> tuple[tuple[bytes, ...], bytes, float | None]:
        """What durable keys are made and checked with: the deployment's secrets (the first signs, every one
        verifies), this Redis's epoch (a short name of it) and when that epoch began (Unix seconds; None for
        an epoch that does not say)."""
        if self._secret is None or self._epoch is None:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.secret_key, secrets.token_bytes(32), nx=True)
            pipe.get(self.secret_key)
            pipe.set(self.epoch_key, new_epoch(), nx=True)
            pipe.get(self.epoch_key)
            with unavailable_as_503():
                _, secret, _, epoch = pipe.execute()
            self._secret = secret
            self._saw(epoch)
        assert self._secret is not None and self._epoch is not None
        return ((self._secret, *self._older), hashlib.blake2b(self._epoch, digest_size=4).digest(),
                epoch_began(self._epoch))

    def lost_since(self, when: float) -> bool:
        """Whether Redis lost its data after ``when`` (time.monotonic()), as far as this process saw."""
        return self.lost_at is not None and when < self.lost_at

    def on_release(self, release: Release) -> None:
        """Call ``release(key, lease, since)`` when another process takes over a session (the listener must
        run), ``since`` being when the poll that took it began (wall-clock µs).  A process that took the
        session over since, at a higher lease, keeps it."""
        self._releases.append(release)

    def _released(self, data: bytes) -> None:
        key, holder, lease, since = (data.decode("ascii", "replace").split(" ") + ["", "", ""])[:4]
        if holder == self.me or not lease.isdigit():
            return  # this process took it over: its own newer poll must not be released by its own notice
        for release in self._releases:
            release(key, int(lease), int(since) if since.isdigit() else 0)


def new_epoch() -> str:
    """A name for a Redis's life that says when it began: ``<Unix ms>-<random>``."""
    return f"{int(time.time() * 1000)}-{secrets.token_hex(6)}"


def epoch_began(epoch: bytes) -> float | None:
    """When an epoch began (Unix seconds), or None for one that does not say (made by an older version)."""
    ms, dash, _ = epoch.partition(b"-")
    return int(ms) / 1000 if dash and ms.isdigit() else None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
