"""The social graph in Redis: the book's keys, each write one Lua script.

Keys, as in *Redis in Action* chapter 8, each under the store's prefix:
``following:<id>`` and ``followers:<id>`` (sorted sets of user ids by follow
time, in ms, unique per set), ``profile:<id>`` and ``home:<id>`` (sorted sets
of status ids scored by the id), and the ``followers``/``following`` counts on
``user:<id>``.  The syndication jobs are a list, ``syndicate``, of
``<a|d>:<status id>:<author id>:<score of the last follower done>``.

A follow and its graph event, or a syndication pass, is one script: two
racing follows of one user cannot both count, and a pass cannot interleave
with a follow, an unfollow or a delete.

Every script is given every key it touches in ``KEYS`` (which Redis Cluster
needs, and which keeps each key under the prefix, chosen in Python alone).  A
key that depends on data (whom a login names, which followers a pass reaches,
which statuses a home timeline holds) is read first, with the script then
checking what it relies on: see each script's comment.
"""

from __future__ import annotations

import re
import time
from typing import Any, Protocol, runtime_checkable

import orjson
import redis

from ... import BadParameter, NotFound, unavailable_as_503
from .social import GRAPH, HomeSnapshot, SocialLimits

DEFAULT_PREFIX = "longpoll:"


@runtime_checkable
class ScriptLog(Protocol):
    """What the Redis stores need of the broker's log (the Redis backend's is one): scripts of their own that
    append to it as one step with their writes, and what they pass to its ``log_append``."""

    @property
    def stream(self) -> str: ...

    def topic_stream(self, topic: str) -> str: ...

    def args(self, topic: str) -> list[Any]: ...

    def script(self, body: str) -> Any: ...


FOLLOW = """
local uid, other = ARGV[1], ARGV[2]
if redis.call('ZSCORE', KEYS[3], other) then return 'same' end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 'limit' end
local function stamp(key)  -- now, or just above the newest score: scores are unique cursors
  local now = tonumber(ARGV[3])
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
  if top and tonumber(top) >= now then return tonumber(top) + 1 end
  return now
end
redis.call('ZADD', KEYS[3], stamp(KEYS[3]), other)
redis.call('ZADD', KEYS[4], stamp(KEYS[4]), uid)
redis.call('HINCRBY', KEYS[5], 'following', 1)
redis.call('HINCRBY', KEYS[6], 'followers', 1)
local size = tonumber(ARGV[5])
local ids = redis.call('ZREVRANGE', KEYS[7], 0, size - 1)
for i = 1, #ids, 500 do
  local pairs = {}
  for j = i, math.min(i + 499, #ids) do
    pairs[#pairs + 1] = ids[j]
    pairs[#pairs + 1] = ids[j]
  end
  redis.call('ZADD', KEYS[8], unpack(pairs))
end
redis.call('ZREMRANGEBYRANK', KEYS[8], 0, -size - 1)
local event = cjson.encode({uid = tonumber(uid), other = tonumber(other), following = true,
                            sid = tonumber(redis.call('GET', KEYS[2]) or '0')})
log_append(KEYS[1], KEYS[9], ARGV[6], ARGV[8], ARGV[9], ARGV[7], event)
return 'done'
"""

UNFOLLOW = """
local uid, other = ARGV[1], ARGV[2]
if redis.call('ZREM', KEYS[3], other) == 0 then return 'same' end
redis.call('ZREM', KEYS[4], uid)
redis.call('HINCRBY', KEYS[5], 'following', -1)
redis.call('HINCRBY', KEYS[6], 'followers', -1)
local ids = redis.call('ZREVRANGE', KEYS[7], 0, tonumber(ARGV[5]) - 1)
for i = 1, #ids, 500 do
  redis.call('ZREM', KEYS[8], unpack(ids, i, math.min(i + 499, #ids)))
end
local event = cjson.encode({uid = tonumber(uid), other = tonumber(other), following = false,
                            sid = tonumber(redis.call('GET', KEYS[2]) or '0')})
log_append(KEYS[1], KEYS[9], ARGV[6], ARGV[8], ARGV[9], ARGV[7], event)
return 'done'
"""
# FOLLOW and UNFOLLOW take the same arguments: KEYS the log, status:id:, following:<uid>,
# followers:<other>, user:<uid>, user:<other>, profile:<other>, home:<uid>, the graph topic's stream;
# ARGV uid, other, now (ms), max following, timeline size, the log's retention, topic, the topic's
# retention and TTL.  Whom the login names is read before: a login's
# user id never changes (users are neither renamed nor deleted), so it cannot go stale.

JOB = "'^(%a):(%d+):(%d+):([%d.]+)$'"
JOB_RE = re.compile(rb"([ad]):([0-9]+):([0-9]+):([0-9.]+)")  # the same, in Python; other kinds are dropped

HOME_SNAPSHOT = """
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local following = redis.call('ZRANGE', KEYS[4], 0, -1)
local newest = {}
local n = tonumber(ARGV[1])
if n > 0 then
  local ids, followed = {}, {}
  for _, uid in ipairs(following) do followed[uid] = true end
  for _, id in ipairs(redis.call('ZREVRANGE', KEYS[5], 0, n - 1)) do ids[id] = true end
  -- Statuses whose syndication has not reached this user yet belong in it too.
  for _, job in ipairs(redis.call('LRANGE', KEYS[3], 0, 9999)) do
    local kind, id, author = string.match(job, JOB)
    if kind == 'a' and followed[author] then ids[id] = true end
  end
  for id in pairs(ids) do newest[#newest + 1] = tonumber(id) end
  table.sort(newest, function(a, b) return a > b end)
end
return {tail[1] and tail[1][1] or '0-0', redis.call('GET', KEYS[2]) or '0', following, newest}
""".replace("JOB", JOB)
# KEYS the log, status:id:, the queue, following:<uid>, home:<uid>; ARGV backfill.  The position, the
# newest status id, the following set and which statuses the home timeline has are one atomic read;
# the statuses themselves are read after it (their keys are known only then).  A status deleted in
# between is left out, and its deletion, after the position, is not passed on, as the session never
# delivered it (``HomeFeed._delivered``); one posted in between is not a candidate.
#
# A pending job of a followed author is a candidate whether or not its pass has reached this user
# yet: once it has, the status is in the home timeline anyway (an unfollow since would have taken the
# author out of the following set; a follow since copied the author's profile).

NEXT_PAGE = """
local function next_page(followers, done, per_pass)
  local rows = redis.call('ZRANGEBYSCORE', followers, '(' .. done, '+inf', 'WITHSCORES', 'LIMIT', 0, per_pass)
  local ids = {}
  for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
  return {table.concat(ids, ','), rows[#rows] or done}
end
"""
# A job's next followers: their ids comma-separated (one reply, not hundreds, for the client to
# parse) and the score of the last one.

FOLLOWERS_PAGE = NEXT_PAGE + "return next_page(KEYS[1], ARGV[1], tonumber(ARGV[2]))"

SYNDICATE = NEXT_PAGE + """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return {0} end
redis.call('LPOP', KEYS[1])
local kind, id, author, per_pass = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if #KEYS > 3 and (kind == 'd' or kind == 'a' and redis.call('EXISTS', KEYS[2]) == 1) then
  local read = {}
  for follower in string.gmatch(ARGV[9], '%d+') do read[#read + 1] = follower end
  local still  -- nil while every follower read is still in the range read (none can join it)
  if redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[7], ARGV[8]) ~= #read then
    still = {}
    for _, follower in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[7], ARGV[8])) do
      still[follower] = true
    end
  end
  local home = 3
  for _, follower in ipairs(read) do
    home = home + 1
    if not still or still[follower] then
      if kind == 'a' then
        redis.call('ZADD', KEYS[home], id, id)
        redis.call('ZREMRANGEBYRANK', KEYS[home], 0, -tonumber(ARGV[6]) - 1)
      else
        redis.call('ZREM', KEYS[home], id)
      end
    end
  end
  if home - 3 == per_pass then
    redis.call('RPUSH', KEYS[1], kind .. ':' .. id .. ':' .. author .. ':' .. ARGV[8])
  end
end
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return {1} end
local _, _, next_author, done = string.match(head, JOB)
if author == '' or next_author ~= author then return {1, head} end
local page = next_page(KEYS[3], done, per_pass)
return {1, head, page[1], page[2]}
""".replace("JOB", JOB)
# One pass of the oldest job.  KEYS the queue, status:<id>, followers:<author>, then home:<follower>
# of each of the next followers, as read just before; ARGV the job, its kind, status id and author,
# followers per pass, timeline size, the job's last score done, the score of the last follower read,
# and those followers (comma-separated: one argument, not hundreds, for the client to encode).
# Why that stays correct:
# - the job is taken only if it is still the oldest (a compare-and-set: a worker that lost the race
#   to another did nothing, and reads again), so a job is done once, and a crash loses none;
# - a follower read is written only if still in the range read: one who unfollowed (or unfollowed
#   and followed again, which copied the author's profile, and scored it above the range) in
#   between is left alone;
# - no follower can be missed: a new follow's score is above every score in the set, so above the
#   range read, and the rest of the job (or the follow's copy of the profile) reaches it.
# A job for a status deleted meanwhile ends (its removal job follows it); a malformed one is dropped.
# The answer names the next job and, when it is by the same author (a post's remaining followers,
# or the next post of a busy author), its next followers, so the next pass is one round trip too.


def status_of(fields: Any) -> dict[str, Any]:
    """A status from its hash (a dict from HGETALL)."""
    raw = {k.decode(): v.decode() for k, v in fields.items()}
    status: dict[str, Any] = {"id": int(raw["id"]), "uid": int(raw["uid"]), "login": raw["login"],
                              "message": raw["message"], "posted": float(raw["posted"])}
    if "location" in raw:
        status["location"] = raw["location"]
    if "x" in raw:
        status.update({k: v for k, v in orjson.loads(raw["x"]).items() if k not in status})
    return status


class RedisSocial:
    """Mixed into RedisStore, whose client, log and key prefix it uses."""

    client: redis.Redis
    log: ScriptLog
    prefix: str

    def key(self, name: str, id: object = "") -> str:
        """The name of a key: every key the store touches is made here, under the prefix."""
        return f"{self.prefix}{name}{id}"

    def _init_social(self, limits: SocialLimits) -> None:
        self.social_limits = limits
        script = self.client.register_script
        self._follow, self._unfollow = self.log.script(FOLLOW), self.log.script(UNFOLLOW)
        self._snapshot, self._syndicate, self._page = script(HOME_SNAPSHOT), script(SYNDICATE), script(FOLLOWERS_PAGE)
        self._ahead: tuple[bytes, tuple[bytes, bytes] | None] | None = None  # the next job (and followers), as seen

    def _author(self, token: str) -> str:
        raise NotImplementedError

    def authenticate(self, token: str) -> int:
        return int(self._author(token))

    def _uid_of(self, login: str) -> str:
        with unavailable_as_503():
            uid = self.client.hget(self.key("users:"), login.lower())
        if uid is None:
            raise NotFound(f"no user {login!r}")
        return uid.decode()

    def user(self, login: str) -> dict[str, Any]:
        uid = self._uid_of(login)
        with unavailable_as_503():
            found = self.client.hmget(self.key("user:", uid), "id", "login", "name", "followers", "following",
                                      "posts", "signup")
        uid, name, display, followers, following, posts, signup = (v.decode() for v in found)
        return {"id": int(uid), "login": name, "name": display, "followers": int(followers),
                "following": int(following), "posts": int(posts), "signup": float(signup)}

    def user_name(self, uid: int) -> str | None:
        with unavailable_as_503():
            name = self.client.hget(self.key("user:", uid), "name")
        return None if name is None else name.decode()

    def follow(self, token: str, login: str) -> bool:
        return self._change(self._follow, token, login, "follow")

    def unfollow(self, token: str, login: str) -> bool:
        return self._change(self._unfollow, token, login, "unfollow")

    def _change(self, script: Any, token: str, login: str, verb: str) -> bool:
        uid = self._author(token)
        other = self._uid_of(login)
        if other == uid:
            raise BadParameter("login", f"you cannot {verb} yourself")
        limits, key = self.social_limits, self.key
        with unavailable_as_503():
            log_len, topic_len, ttl, topic = self.log.args(GRAPH)
            answer = script(keys=[self.log.stream, key("status:id:"), key("following:", uid), key("followers:", other),
                                  key("user:", uid), key("user:", other), key("profile:", other), key("home:", uid),
                                  self.log.topic_stream(GRAPH)],
                            args=[uid, other, int(time.time() * 1000), limits.max_following,
                                  limits.timeline_size, log_len, topic, topic_len, ttl]).decode()
        if answer == "limit":
            raise BadParameter("login", f"you follow {limits.max_following} users, the most allowed; "
                                        "unfollow someone first")
        return answer == "done"

    def connections(self, login: str, which: str, before: int | None,
                    count: int) -> tuple[list[dict[str, Any]], int | None]:
        """Read in steps, each from keys known by then: a user's login and name never change."""
        if which not in ("followers", "following"):
            raise ValueError(which)
        uid = self._uid_of(login)
        with unavailable_as_503():
            rows = self.client.zrevrangebyscore(self.key(f"{which}:", uid), "+inf" if before is None else f"({before}",
                                                "-inf", start=0, num=count + 1, withscores=True, score_cast_func=int)
            with self.client.pipeline(transaction=False) as pipe:
                for member, _ in rows[:count]:
                    pipe.hmget(self.key("user:", member.decode()), "login", "name")
                names = pipe.execute()
        users = [{"id": int(member), "login": name.decode(), "name": display.decode(), "since": score / 1000}
                 for (member, score), (name, display) in zip(rows[:count], names, strict=True)]
        return users, (rows[count - 1][1] if len(rows) > count else None)

    def timeline(self, which: str, uid: int, page: int, count: int) -> list[dict[str, Any]]:
        """The page's ids, then their statuses (one deleted in between is left out, as one deleted before)."""
        if which not in ("profile", "home"):
            raise ValueError(which)
        with unavailable_as_503():
            ids = self.client.zrevrange(self.key(f"{which}:", uid), (page - 1) * count, page * count - 1)
            found = self._statuses(int(i) for i in ids)
        return [status_of(fields) for fields in found if fields]

    def _statuses(self, ids: Any) -> list[dict[bytes, bytes]]:
        """The hashes of these statuses, in one round trip (empty for a status deleted)."""
        with self.client.pipeline(transaction=False) as pipe:
            for status_id in ids:
                pipe.hgetall(self.key("status:", status_id))
            return pipe.execute()

    def home_snapshot(self, uid: int, backfill: int) -> HomeSnapshot:
        key = self.key
        with unavailable_as_503():
            position, sid, following, ids = self._snapshot(
                keys=[self.log.stream, key("status:id:"), key("syndicate"), key("following:", uid), key("home:", uid)],
                args=[backfill])
            statuses: list[dict[bytes, bytes]] = []
            for start in range(0, len(ids), backfill or 1):  # newest first, until enough are still there
                statuses += [fields for fields in self._statuses(ids[start:start + backfill]) if fields]
                if len(statuses) >= backfill:
                    break
        return HomeSnapshot(position.decode(), int(sid), frozenset(int(u) for u in following),
                            [status_of(fields) for fields in reversed(statuses[:backfill])])

    def syndicate_pass(self) -> bool:
        limits, key, queue = self.social_limits, self.key, self.key("syndicate")
        ahead, self._ahead = self._ahead, None
        with unavailable_as_503():
            if ahead is None:
                job = self.client.lindex(queue, 0)
                if job is None:
                    return False
                ahead = (job, None)
            job, page = ahead
            keys: list[str | bytes] = [queue]
            args = [job, "", "", "", limits.fanout_per_pass, limits.timeline_size, "", "", ""]
            parsed = JOB_RE.fullmatch(job)
            if parsed is not None:
                kind, status_id, author, done = (part.decode() for part in parsed.groups())
                followers = key("followers:", author)
                if page is None:
                    page = tuple(self._page(keys=[followers], args=[done, limits.fanout_per_pass]))
                home = key("home:").encode()  # + each id as bytes: the client encodes hundreds of these a pass
                keys += [key("status:", status_id), followers, *(home + m for m in page[0].split(b",") if m)]
                args[1:4] = [kind, status_id, author]
                args[6:9] = [done, page[1], page[0]]
            answer = self._syndicate(keys=keys, args=args)
        if len(answer) > 1:
            self._ahead = (answer[1], (answer[2], answer[3]) if len(answer) > 2 else None)
        return True

    def wait_for_jobs(self, timeout: float) -> None:
        """Block until the queue has a job (BLMOVE of a list onto itself, tail to tail, takes nothing)."""
        queue = self.key("syndicate")
        with unavailable_as_503():
            self.client.blmove(queue, queue, timeout, "RIGHT", "RIGHT")

    def syndication_pending(self) -> int:
        with unavailable_as_503():
            return self.client.llen(self.key("syndicate"))
