"""Users and statuses in Redis, in the book's shape, changed only by Lua scripts.

Keys as in *Redis in Action* chapter 8, each under the store's prefix
(``longpoll:`` unless told otherwise, so that an app sharing the database
keeps its own names): ``user:<id>`` and ``status:<id>`` hashes, the
``users:`` login index (lower case), the ``user:id:`` and ``status:id:``
counters; plus ``tokens:`` (token digest -> user id).  Each write is one
script, so two users racing for a login, or two deletes of one status,
cannot interleave; and a status is appended to the stream in the same script
that stores it and takes its id, and to its author's profile and home
timelines, with the job that syndicates it to the followers' (see
``social_redis.py``, which also says how keys that depend on data reach the
scripts through ``KEYS``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from typing import Any

import orjson
import redis

from ... import BackendUnavailable, Batch, Conflict, Forbidden, NotFound, queued, unavailable_as_503
from .social import SocialLimits
from .social_redis import DEFAULT_PREFIX, RedisSocial, ScriptLog, status_of
from .store import STREAM_SALT_BYTES, TOPIC, Hydrate, bad_token, digest, draft, new_token

CREATE_USER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[6])
redis.call('HSET', KEYS[2], 'login', ARGV[2], 'id', ARGV[6], 'name', ARGV[3],
           'followers', 0, 'following', 0, 'posts', 0, 'signup', ARGV[5], 'token', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[6])
return 1
"""
# KEYS users:, user:<id>, tokens:; ARGV login (lower case), login, name, token digest, signup, id.  The
# id is taken (INCR user:id:) just before, so that its key can be named: a signup refused for a taken
# login leaves its id unused (ids are unique, not dense), and the login is claimed in the same step as
# the user is stored, so no login ever names a missing user.

STREAM_SALT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSETNX', KEYS[1], 'stream_salt', ARGV[1])
return redis.call('HGET', KEYS[1], 'stream_salt')
"""
# KEYS user:<id>; ARGV a new salt.  The salt is made only in a record that exists (one lost meanwhile is not
# brought back as a hash holding a salt alone), and only once: every process signs with the first.

WITH_POSTED = """
local function with_posted(status, posted)
  local json = cjson.encode(status)
  return string.sub(json, 1, -2) .. ',"posted":' .. posted .. '}'
end
"""
# cjson writes a whole number as 1700000000, so a status posted on a whole second
# would carry an int; ``posted`` (Python's repr of a float, "1700000000.0") goes
# into the JSON as written, a float on every path.

POST_STATUS = WITH_POSTED + """
local login, token = unpack(redis.call('HMGET', KEYS[4], 'login', 'token'))
if not login or token ~= ARGV[12] then return 0 end
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if newest + 1 ~= tonumber(ARGV[1]) then return {'moved', newest} end
local id = redis.call('INCR', KEYS[1])
local status = {id = id, uid = tonumber(ARGV[9]), login = login, message = ARGV[2]}
local fields = {'id', id, 'uid', ARGV[9], 'login', login, 'message', ARGV[2], 'posted', ARGV[3]}
if ARGV[4] ~= '' then
  status.location = ARGV[4]
  fields[#fields + 1] = 'location'
  fields[#fields + 1] = ARGV[4]
end
local body = with_posted(status, ARGV[3])
if ARGV[7] ~= '' then  -- hydrated fields, as JSON made in Python: kept exactly as they are
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = ARGV[7]
  body = string.sub(body, 1, -2) .. ',' .. string.sub(ARGV[7], 2)
end
redis.call('HSET', KEYS[5], unpack(fields))
redis.call('HINCRBY', KEYS[4], 'posts', 1)
for _, timeline in ipairs({KEYS[6], KEYS[7]}) do
  redis.call('ZADD', timeline, id, id)
  redis.call('ZREMRANGEBYRANK', timeline, 0, -tonumber(ARGV[8]) - 1)
end
if redis.call('ZCARD', KEYS[8]) > 0 then
  redis.call('RPUSH', KEYS[3], 'a:' .. id .. ':' .. ARGV[9] .. ':0')
end
log_append(KEYS[2], KEYS[9], ARGV[5], ARGV[10], ARGV[11], ARGV[6], body)
return {id, login}
"""
# KEYS status:id:, the log, the queue, user:<uid>, status:<id>, profile:<uid>, home:<uid>,
# followers:<uid>, the topic's stream; ARGV id, message, posted, location, the log's retention, topic,
# hydrated fields, timeline size, uid, the topic's retention and TTL, the token's digest (checked here, so
# that a process may remember whose a token is: a user Redis lost, whose id another took, is not posted as).
# The id must be known to name its key, yet be taken in the step that appends the status to the log (ids
# increase in log order: the home stream relies on it).  So the caller names the id it expects, and the
# script takes it only if it is still the next one (a compare-and-set); if another post took it meanwhile,
# nothing is written and the answer says which id is the newest.

DELETE_STATUS = WITH_POSTED + """
local owner = redis.call('HGET', KEYS[3], 'uid')
if not owner then return 0 end
if owner ~= ARGV[2] then return -1 end
local flat = redis.call('HGETALL', KEYS[3])
local status = {}
for i = 1, #flat, 2 do status[flat[i]] = flat[i + 1] end
status.id = tonumber(status.id)
status.uid = tonumber(status.uid)
local posted = status.posted
status.posted = nil
status.deleted = true
status.x = nil
redis.call('DEL', KEYS[3])
redis.call('HINCRBY', KEYS[4], 'posts', -1)
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
if redis.call('ZCARD', KEYS[7]) > 0 then
  redis.call('RPUSH', KEYS[2], 'd:' .. ARGV[1] .. ':' .. owner .. ':0')
end
log_append(KEYS[1], KEYS[8], ARGV[3], ARGV[5], ARGV[6], ARGV[4], with_posted(status, posted))
return 1
"""
# KEYS the log, the queue, status:<id>, then the caller's user:, profile:, home: and followers:, the
# topic's stream; ARGV id, the caller's uid, the log's retention, topic, the topic's retention and TTL.
# Only the author may delete: the keys are the caller's, and used only once the status is found to be
# the caller's.

POST_ATTEMPTS = 100
"""Tries at taking the next status id before a 503: each one lost is a status another post published."""

POSTER_CACHE = 10_000
"""Token digests whose user this process remembers (all are forgotten when it is full)."""


class RedisStore(RedisSocial):
    """``prefix`` starts the name of every key the store touches, so that apps sharing a database, or
    two stores on one, each keep their own."""

    def __init__(self, client: redis.Redis, log: ScriptLog, social_limits: SocialLimits = SocialLimits(),
                 prefix: str = DEFAULT_PREFIX):
        self.client = client
        self.log = log
        self.prefix = prefix
        self.bridge: Any = None  # the seeds' PUBLISH path into the hub, when open_store made one
        self._next_status = 1  # the id this process expects its next post to take: see POST_STATUS
        self._poster_cache: dict[str, tuple[str, str]] = {}
        self._posting = threading.Lock()
        self.posts: Batch | None = self  # posts batched: see many()
        self._init_social(social_limits)
        self._create_user = client.register_script(CREATE_USER)
        self._post = log.script(POST_STATUS)
        self._delete = log.script(DELETE_STATUS)
        self._stream_salt = client.register_script(STREAM_SALT)

    def create_user(self, login: str, name: str) -> dict[str, Any]:
        token, hashed = new_token()
        key = self.key
        with unavailable_as_503():
            uid = self.client.incr(key("user:id:"))
            created = self._create_user(keys=[key("users:"), key("user:", uid), key("tokens:")],
                                        args=[login.lower(), login, name, hashed, repr(time.time()), uid])
        if not created:
            raise Conflict(f"the login {login!r} is taken")
        return {"id": uid, "login": login, "token": token}

    def stream_salt(self, uid: int, make: bool = False) -> bytes | None:
        key = self.key("user:", uid)
        with unavailable_as_503():
            if make:
                salt: bytes | None = self._stream_salt(keys=[key], args=[secrets.token_bytes(STREAM_SALT_BYTES)])
            else:
                salt = self.client.hget(key, "stream_salt")
        return salt

    def _identify(self, token: str) -> tuple[str, str]:
        """The token's user id and login, comparing token digests in constant time."""
        hashed = digest(token)
        with unavailable_as_503():
            uid = self.client.hget(self.key("tokens:"), hashed)
            if uid is None:
                raise bad_token()
            stored, login = self.client.hmget(self.key("user:", uid.decode()), "token", "login")
        if stored is None or not hmac.compare_digest(stored, hashed.encode()):
            raise bad_token()
        return uid.decode(), login.decode()

    def _author(self, token: str) -> str:
        return self._identify(token)[0]

    def post_status(self, token: str, message: str, location: str | None,
                    hydrate: Hydrate | None = None) -> dict[str, Any]:
        answer = self._post_all([(token, message, location, hydrate)])[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def many(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """``post_status`` calls (``posts``) as one pipeline: the posts of one moment on an event loop cost one
        round trip, and take consecutive ids."""
        return self._post_all([call[1:] for call in calls])

    def _post_all(self, posts: list[tuple[Any, ...]]) -> list[Any]:
        results: list[Any] = [None] * len(posts)
        hashed = [digest(token) for token, *_ in posts]
        try:
            authors = self._posters(hashed)
        except BackendUnavailable as exc:
            return [exc] * len(posts)
        log_len, topic_len, ttl, topic = self.log.args(TOPIC)
        drafts: dict[int, tuple[str, dict[str, Any], dict[str, Any], list[Any]]] = {}
        for i, (_token, message, location, hydrate) in enumerate(posts):
            author = authors.get(hashed[i])
            if author is None:
                results[i] = bad_token()
                continue
            uid, login = author
            status = draft(int(uid), login, message, location)
            extra = hydrate(status) if hydrate is not None else {}
            drafts[i] = (uid, status, extra, [message, repr(status["posted"]), location or "", log_len, topic,
                                              orjson.dumps(extra) if extra else "", self.social_limits.timeline_size,
                                              uid, topic_len, ttl, hashed[i]])
        pending = list(drafts)
        key = self.key
        for _ in range(POST_ATTEMPTS):
            if not pending:
                return results
            pipe = self.client.pipeline(transaction=False)
            with self._posting:  # one batch at a time takes ids: two would expect the same ones
                expected = self._next_status  # a post that loses it to another process's retries with the next
                for n, i in enumerate(pending):
                    uid, _status, _extra, args = drafts[i]
                    queued(pipe, self._post, [key("status:id:"), self.log.stream, key("syndicate"), key("user:", uid),
                                              key("status:", expected + n), key("profile:", uid), key("home:", uid),
                                              key("followers:", uid), self.log.topic_stream(TOPIC)],
                           [expected + n, *args])
                try:
                    with unavailable_as_503():
                        answers = pipe.execute(raise_on_error=False)
                except BackendUnavailable as exc:
                    for i in pending:
                        results[i] = exc
                    return results
                moved = []
                for i, answer in zip(pending, answers, strict=True):
                    if isinstance(answer, Exception):
                        results[i] = BackendUnavailable(f"the status store failed: {answer}", retry_after=1)
                    elif not answer:
                        self._poster_cache.pop(hashed[i], None)
                        results[i] = bad_token()
                    elif answer[0] == b"moved":
                        self._next_status = int(answer[1]) + 1  # lower too, after Redis lost its data
                        moved.append(i)
                    else:
                        self._next_status = int(answer[0]) + 1
                        _uid, status, extra, _args = drafts[i]
                        results[i] = {"id": int(answer[0]), **status, **extra}
            pending = moved
        for i in pending:
            results[i] = BackendUnavailable("statuses are being posted too fast to number this one; retry",
                                            retry_after=1)
        return results

    def _posters(self, hashed: list[str]) -> dict[str, tuple[str, str]]:
        """(user id, login) by token digest, from this process's memory where it can: POST_STATUS checks the
        digest against the user's record again, in the step that posts."""
        cache = self._poster_cache
        unknown = list({h for h in hashed if h not in cache})
        if unknown:
            with unavailable_as_503():
                uids = self.client.hmget(self.key("tokens:"), unknown)
                found = [(h, uid.decode()) for h, uid in zip(unknown, uids, strict=True) if uid is not None]
                pipe = self.client.pipeline(transaction=False)
                for _h, uid in found:
                    pipe.hmget(self.key("user:", uid), "token", "login")
                records = pipe.execute()
            if len(cache) + len(found) > POSTER_CACHE:
                cache.clear()
            for (h, uid), (stored, login) in zip(found, records, strict=True):
                if stored is not None and login is not None and hmac.compare_digest(stored, h.encode()):
                    cache[h] = (uid, login.decode())
        return {h: cache[h] for h in hashed if h in cache}

    def delete_status(self, token: str, status_id: int) -> dict[str, Any]:
        uid = self._author(token)
        key = self.key
        log_len, topic_len, ttl, topic = self.log.args(TOPIC)
        with unavailable_as_503():
            answer = self._delete(keys=[self.log.stream, key("syndicate"), key("status:", status_id),
                                        key("user:", uid), key("profile:", uid), key("home:", uid),
                                        key("followers:", uid), self.log.topic_stream(TOPIC)],
                                  args=[status_id, uid, log_len, topic, topic_len, ttl])
        if answer == 0:
            raise NotFound(f"no status {status_id}")
        if answer == -1:
            raise Forbidden("only its author can delete a status")
        return {"id": status_id, "deleted": True}

    def get_status(self, status_id: int) -> dict[str, Any]:
        with unavailable_as_503():
            fields = self.client.hgetall(self.key("status:", status_id))
        if not fields:
            raise NotFound(f"no status {status_id}")
        return status_of(fields)
