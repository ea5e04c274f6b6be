"""Users and statuses in Redis, in the book's shape, changed only by Lua scripts.

Keys as in *Redis in Action* chapter 8: ``user:<id>`` and ``status:<id>``
hashes, the ``users:`` login index (lower case), the ``user:id:`` and
``status:id:`` counters; plus ``tokens:`` (token digest -> user id).  Each
write is one script, so two users racing for a login, or two deletes of one
status, cannot interleave; and a status is appended to the stream in the same
script that stores it, and to its author's profile and home timelines, with
the job that syndicates it to the followers' (see ``social_redis.py``).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson
import redis

from ..backends.redis import APPEND_LUA, RedisLog, unavailable_as_503
from ..errors import Conflict, Forbidden, NotFound
from .social import SocialLimits
from .social_redis import QUEUE, RedisSocial, status_of
from .store import TOPIC, Hydrate, bad_token, digest, draft, new_token

CREATE_USER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', 'user:' .. id, 'login', ARGV[2], 'id', id, 'name', ARGV[3],
           'followers', 0, 'following', 0, 'posts', 0, 'signup', ARGV[5], 'token', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], id)
return id
"""

AUTHOR = """
local uid = redis.call('HGET', KEYS[1], ARGV[1])
if not uid then return false end
local user = redis.call('HMGET', 'user:' .. uid, 'token', 'login')
return {uid, user[1], user[2]}
"""
# The token index and the user's own digest in one round trip; the digests are
# compared in Python, in constant time.

WITH_POSTED = """
local function with_posted(status, posted)
  local json = cjson.encode(status)
  return string.sub(json, 1, -2) .. ',"posted":' .. posted .. '}'
end
"""
# cjson writes a whole number as 1700000000, so a status posted on a whole second
# would carry an int; ``posted`` (Python's repr of a float, "1700000000.0") goes
# into the JSON as written, a float on every path.

POST_STATUS = APPEND_LUA + WITH_POSTED + """
local user = 'user:' .. ARGV[1]
local login = redis.call('HGET', user, 'login')
if not login then return 0 end
local id = redis.call('INCR', KEYS[1])
local status = {id = id, uid = tonumber(ARGV[1]), login = login, message = ARGV[2]}
local fields = {'id', id, 'uid', ARGV[1], 'login', login, 'message', ARGV[2], 'posted', ARGV[3]}
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
redis.call('HSET', 'status:' .. id, unpack(fields))
redis.call('HINCRBY', user, 'posts', 1)
for _, timeline in ipairs({'profile:' .. ARGV[1], 'home:' .. ARGV[1]}) do
  redis.call('ZADD', timeline, id, id)
  redis.call('ZREMRANGEBYRANK', timeline, 0, -tonumber(ARGV[8]) - 1)
end
if redis.call('ZCARD', 'followers:' .. ARGV[1]) > 0 then
  redis.call('RPUSH', KEYS[3], 'a:' .. id .. ':' .. ARGV[1] .. ':0')
end
log_append(KEYS[2], KEYS[4], ARGV[5], ARGV[9], ARGV[10], ARGV[6], body)
return {id, login}
"""

DELETE_STATUS = APPEND_LUA + WITH_POSTED + """
local key = 'status:' .. ARGV[1]
local owner = redis.call('HGET', key, 'uid')
if not owner then return 0 end
if owner ~= ARGV[2] then return -1 end
local flat = redis.call('HGETALL', key)
local status = {}
for i = 1, #flat, 2 do status[flat[i]] = flat[i + 1] end
status.id = tonumber(status.id)
status.uid = tonumber(status.uid)
local posted = status.posted
status.posted = nil
status.deleted = true
status.x = nil
redis.call('DEL', key)
redis.call('HINCRBY', 'user:' .. owner, 'posts', -1)
redis.call('ZREM', 'profile:' .. owner, ARGV[1])
redis.call('ZREM', 'home:' .. owner, ARGV[1])
if redis.call('ZCARD', 'followers:' .. owner) > 0 then
  redis.call('RPUSH', KEYS[2], 'd:' .. ARGV[1] .. ':' .. owner .. ':0')
end
log_append(KEYS[1], KEYS[3], ARGV[3], ARGV[5], ARGV[6], ARGV[4], with_posted(status, posted))
return 1
"""


class RedisStore(RedisSocial):
    def __init__(self, client: redis.Redis, log: RedisLog, social_limits: SocialLimits = SocialLimits()):
        self.client = client
        self.log = log
        self._init_social(social_limits)
        self._create_user = client.register_script(CREATE_USER)
        self._author_of = client.register_script(AUTHOR)
        self._post = client.register_script(POST_STATUS)
        self._delete = client.register_script(DELETE_STATUS)

    def create_user(self, login: str, name: str) -> dict[str, Any]:
        token, hashed = new_token()
        with unavailable_as_503():
            uid = self._create_user(keys=["users:", "user:id:", "tokens:"],
                                    args=[login.lower(), login, name, hashed, repr(time.time())])
        if not uid:
            raise Conflict(f"the login {login!r} is taken")
        return {"id": int(uid), "login": login, "token": token}

    def _identify(self, token: str) -> tuple[str, str]:
        """The token's user id and login, comparing token digests in constant time."""
        hashed = digest(token)
        with unavailable_as_503():
            found = self._author_of(keys=["tokens:"], args=[hashed])
        uid, stored, login = found if found else (None, None, None)
        if uid is None or stored is None or not hmac.compare_digest(stored, hashed.encode()):
            raise bad_token()
        return uid.decode(), login.decode()

    def _author(self, token: str) -> str:
        return self._identify(token)[0]

    def post_status(self, token: str, message: str, location: str | None,
                    hydrate: Hydrate | None = None) -> dict[str, Any]:
        uid, login = self._identify(token)
        status = draft(int(uid), login, message, location)
        extra = hydrate(status) if hydrate is not None else {}
        with unavailable_as_503():
            log_len, topic_len, ttl, topic = self.log.args(TOPIC)
            answer = self._post(keys=["status:id:", self.log.stream, QUEUE, self.log.topic_stream(TOPIC)],
                                args=[uid, message, repr(status["posted"]), location or "", log_len,
                                      topic, orjson.dumps(extra) if extra else "",
                                      self.social_limits.timeline_size, topic_len, ttl])
        if not answer:
            raise bad_token()
        return {"id": int(answer[0]), **status, **extra}

    def delete_status(self, token: str, status_id: int) -> dict[str, Any]:
        uid = self._author(token)
        with unavailable_as_503():
            log_len, topic_len, ttl, topic = self.log.args(TOPIC)
            answer = self._delete(keys=[self.log.stream, QUEUE, self.log.topic_stream(TOPIC)],
                                  args=[status_id, uid, log_len, topic, topic_len, ttl])
        if answer == 0:
            raise NotFound(f"no status {status_id}")
        if answer == -1:
            raise Forbidden("only its author can delete a status")
        return {"id": status_id, "deleted": True}

    def get_status(self, status_id: int) -> dict[str, Any]:
        with unavailable_as_503():
            fields = self.client.hgetall(f"status:{status_id}")
        if not fields:
            raise NotFound(f"no status {status_id}")
        return status_of(fields)
