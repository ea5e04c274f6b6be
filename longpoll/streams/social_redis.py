"""The social graph in Redis: the book's keys, each write one Lua script.

Keys, as in *Redis in Action* chapter 8: ``following:<id>`` and
``followers:<id>`` (sorted sets of user ids by follow time, in ms, unique per
set), ``profile:<id>`` and ``home:<id>`` (sorted sets of status ids scored by
the id), and the ``followers``/``following`` counts on ``user:<id>``.  The
syndication jobs are a list, ``longpoll:syndicate``, of
``<a|d>:<status id>:<author id>:<score of the last follower done>``.

A follow and its graph event, or a syndication pass, is one script: two
racing follows of one user cannot both count, and a pass cannot interleave
with a follow, an unfollow or a delete.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from ..backends.redis import APPEND_LUA, unavailable_as_503
from ..errors import BadParameter, NotFound
from .social import GRAPH, HomeSnapshot, SocialLimits

QUEUE = "longpoll:syndicate"

FOLLOW = APPEND_LUA + """
local uid = ARGV[1]
local other = redis.call('HGET', KEYS[1], ARGV[2])
if not other then return 'missing' end
if other == uid then return 'self' end
local following = 'following:' .. uid
if redis.call('ZSCORE', following, other) then return 'same' end
if redis.call('ZCARD', following) >= tonumber(ARGV[4]) then return 'limit' end
local function stamp(key)  -- now, or just above the newest score: scores are unique cursors
  local now = tonumber(ARGV[3])
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
  if top and tonumber(top) >= now then return tonumber(top) + 1 end
  return now
end
redis.call('ZADD', following, stamp(following), other)
local followers = 'followers:' .. other
redis.call('ZADD', followers, stamp(followers), uid)
redis.call('HINCRBY', 'user:' .. uid, 'following', 1)
redis.call('HINCRBY', 'user:' .. other, 'followers', 1)
local size = tonumber(ARGV[5])
local home = 'home:' .. uid
local ids = redis.call('ZREVRANGE', 'profile:' .. other, 0, size - 1)
for i = 1, #ids, 500 do
  local pairs = {}
  for j = i, math.min(i + 499, #ids) do
    pairs[#pairs + 1] = ids[j]
    pairs[#pairs + 1] = ids[j]
  end
  redis.call('ZADD', home, unpack(pairs))
end
redis.call('ZREMRANGEBYRANK', home, 0, -size - 1)
local event = cjson.encode({uid = tonumber(uid), other = tonumber(other), following = true,
                            sid = tonumber(redis.call('GET', KEYS[3]) or '0')})
log_append(KEYS[2], KEYS[4], ARGV[6], ARGV[8], ARGV[9], ARGV[7], event)
return 'done'
"""

UNFOLLOW = APPEND_LUA + """
local uid = ARGV[1]
local other = redis.call('HGET', KEYS[1], ARGV[2])
if not other then return 'missing' end
if other == uid then return 'self' end
if redis.call('ZREM', 'following:' .. uid, other) == 0 then return 'same' end
redis.call('ZREM', 'followers:' .. other, uid)
redis.call('HINCRBY', 'user:' .. uid, 'following', -1)
redis.call('HINCRBY', 'user:' .. other, 'followers', -1)
local ids = redis.call('ZREVRANGE', 'profile:' .. other, 0, tonumber(ARGV[5]) - 1)
for i = 1, #ids, 500 do
  redis.call('ZREM', 'home:' .. uid, unpack(ids, i, math.min(i + 499, #ids)))
end
local event = cjson.encode({uid = tonumber(uid), other = tonumber(other), following = false,
                            sid = tonumber(redis.call('GET', KEYS[3]) or '0')})
log_append(KEYS[2], KEYS[4], ARGV[6], ARGV[8], ARGV[9], ARGV[7], event)
return 'done'
"""
# FOLLOW and UNFOLLOW take the same arguments: KEYS users:, the log, status:id:, the graph topic's stream;
# ARGV uid, login (lower case), now (ms), max following, timeline size, the log's retention, topic,
# the topic's retention and TTL.

USER = """
local uid = redis.call('HGET', KEYS[1], ARGV[1])
if not uid then return false end
return redis.call('HMGET', 'user:' .. uid, 'id', 'login', 'name', 'followers', 'following', 'posts', 'signup')
"""

CONNECTIONS = """
local uid = redis.call('HGET', KEYS[1], ARGV[1])
if not uid then return false end
local rows = redis.call('ZREVRANGEBYSCORE', ARGV[2] .. uid, ARGV[3], '-inf', 'WITHSCORES', 'LIMIT', 0, ARGV[4])
local out = {}
for i = 1, #rows, 2 do
  local user = redis.call('HMGET', 'user:' .. rows[i], 'login', 'name')
  out[#out + 1] = {rows[i], rows[i + 1], user[1], user[2]}
end
return out
"""

TIMELINE = """
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  local fields = redis.call('HGETALL', 'status:' .. id)
  if #fields > 0 then out[#out + 1] = fields end
end
return out
"""

JOB = "'^(%a):(%d+):(%d+):([%d.]+)$'"

HOME_SNAPSHOT = """
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local following = 'following:' .. ARGV[1]
local statuses = {}
local n = tonumber(ARGV[2])
if n > 0 then
  local ids = {}
  for _, id in ipairs(redis.call('ZREVRANGE', 'home:' .. ARGV[1], 0, n - 1)) do ids[id] = true end
  -- Statuses whose syndication has not reached this user yet belong in it too.
  for _, job in ipairs(redis.call('LRANGE', KEYS[3], 0, 9999)) do
    local kind, id, author, done = string.match(job, JOB)
    if kind == 'a' and redis.call('ZSCORE', following, author) then
      local score = redis.call('ZSCORE', 'followers:' .. author, ARGV[1])
      if score and tonumber(score) > tonumber(done) then ids[id] = true end
    end
  end
  local newest = {}
  for id in pairs(ids) do newest[#newest + 1] = tonumber(id) end
  table.sort(newest, function(a, b) return a > b end)
  for _, id in ipairs(newest) do
    if #statuses >= n then break end
    local fields = redis.call('HGETALL', 'status:' .. id)
    if #fields > 0 then statuses[#statuses + 1] = fields end
  end
end
return {tail[1] and tail[1][1] or '0-0', redis.call('GET', KEYS[2]) or '0',
        redis.call('ZRANGE', following, 0, -1), statuses}
""".replace("JOB", JOB)

SYNDICATE = """
local job = redis.call('LPOP', KEYS[1])
if not job then return -1 end
local kind, id, author, done = string.match(job, JOB)
if kind == 'a' and redis.call('EXISTS', 'status:' .. id) == 1 or kind == 'd' then
  local rows = redis.call('ZRANGEBYSCORE', 'followers:' .. author, '(' .. done, '+inf', 'WITHSCORES',
                          'LIMIT', 0, ARGV[1])
  for i = 1, #rows, 2 do
    local home = 'home:' .. rows[i]
    if kind == 'a' then
      redis.call('ZADD', home, id, id)
      redis.call('ZREMRANGEBYRANK', home, 0, -tonumber(ARGV[2]) - 1)
    else
      redis.call('ZREM', home, id)
    end
  end
  if #rows == 2 * tonumber(ARGV[1]) then
    redis.call('RPUSH', KEYS[1], kind .. ':' .. id .. ':' .. author .. ':' .. rows[#rows])
  end
end
return redis.call('LLEN', KEYS[1])
""".replace("JOB", JOB)
# A job for a status deleted meanwhile ends (its removal job follows it); a
# malformed one is dropped.


def status_of(fields: Any) -> dict[str, Any]:
    """A status from its hash (a dict from HGETALL, or the flat list a script returns)."""
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    raw = {k.decode(): v.decode() for k, v in fields.items()}
    status: dict[str, Any] = {"id": int(raw["id"]), "uid": int(raw["uid"]), "login": raw["login"],
                              "message": raw["message"], "posted": float(raw["posted"])}
    if "location" in raw:
        status["location"] = raw["location"]
    if "x" in raw:
        status.update({k: v for k, v in orjson.loads(raw["x"]).items() if k not in status})
    return status


class RedisSocial:
    """Mixed into RedisStore, whose client and log it uses."""

    client: redis.Redis
    log: Any

    def _init_social(self, limits: SocialLimits) -> None:
        self.social_limits = limits
        script = self.client.register_script
        self._follow, self._unfollow, self._user = script(FOLLOW), script(UNFOLLOW), script(USER)
        self._connections, self._timeline = script(CONNECTIONS), script(TIMELINE)
        self._snapshot, self._syndicate = script(HOME_SNAPSHOT), script(SYNDICATE)

    def _author(self, token: str) -> str:
        raise NotImplementedError

    def authenticate(self, token: str) -> int:
        return int(self._author(token))

    def user(self, login: str) -> dict[str, Any]:
        with unavailable_as_503():
            found = self._user(keys=["users:"], args=[login.lower()])
        if not found:
            raise NotFound(f"no user {login!r}")
        uid, name, display, followers, following, posts, signup = (v.decode() for v in found)
        return {"id": int(uid), "login": name, "name": display, "followers": int(followers),
                "following": int(following), "posts": int(posts), "signup": float(signup)}

    def user_name(self, uid: int) -> str | None:
        with unavailable_as_503():
            name = self.client.hget(f"user:{uid}", "name")
        return None if name is None else name.decode()

    def follow(self, token: str, login: str) -> bool:
        return self._change(self._follow, token, login, "follow")

    def unfollow(self, token: str, login: str) -> bool:
        return self._change(self._unfollow, token, login, "unfollow")

    def _change(self, script: Any, token: str, login: str, verb: str) -> bool:
        uid = self._author(token)
        limits = self.social_limits
        with unavailable_as_503():
            log_len, topic_len, ttl, topic = self.log.args(GRAPH)
            answer = script(keys=["users:", self.log.stream, "status:id:", self.log.topic_stream(GRAPH)],
                            args=[uid, login.lower(), int(time.time() * 1000), limits.max_following,
                                  limits.timeline_size, log_len, topic, topic_len, ttl]).decode()
        if answer == "missing":
            raise NotFound(f"no user {login!r}")
        if answer == "self":
            raise BadParameter("login", f"you cannot {verb} yourself")
        if answer == "limit":
            raise BadParameter("login", f"you follow {limits.max_following} users, the most allowed; "
                                        "unfollow someone first")
        return answer == "done"

    def connections(self, login: str, which: str, before: int | None,
                    count: int) -> tuple[list[dict[str, Any]], int | None]:
        with unavailable_as_503():
            rows = self._connections(keys=["users:"], args=[login.lower(), f"{which}:",
                                                            "+inf" if before is None else f"({before}", count + 1])
        if rows is False or rows is None:
            raise NotFound(f"no user {login!r}")
        users = [{"id": int(uid), "login": name.decode(), "name": display.decode(), "since": int(score) / 1000}
                 for uid, score, name, display in rows[:count]]
        return users, (int(rows[count - 1][1]) if len(rows) > count else None)

    def timeline(self, which: str, uid: int, page: int, count: int) -> list[dict[str, Any]]:
        with unavailable_as_503():
            found = self._timeline(keys=[f"{which}:{uid}"], args=[(page - 1) * count, page * count - 1])
        return [status_of(fields) for fields in found]

    def home_snapshot(self, uid: int, backfill: int) -> HomeSnapshot:
        with unavailable_as_503():
            position, sid, following, statuses = self._snapshot(keys=[self.log.stream, "status:id:", QUEUE],
                                                                args=[uid, backfill])
        return HomeSnapshot(position.decode(), int(sid), frozenset(int(u) for u in following),
                            [status_of(fields) for fields in reversed(statuses)])

    def syndicate_pass(self) -> bool:
        limits = self.social_limits
        with unavailable_as_503():
            return self._syndicate(keys=[QUEUE], args=[limits.fanout_per_pass, limits.timeline_size]) >= 0

    def wait_for_jobs(self, timeout: float) -> None:
        """Block until the queue has a job (BLMOVE of a list onto itself, tail to tail, takes nothing)."""
        with unavailable_as_503():
            self.client.blmove(QUEUE, QUEUE, timeout, "RIGHT", "RIGHT")

    def syndication_pending(self) -> int:
        with unavailable_as_503():
            return self.client.llen(QUEUE)
