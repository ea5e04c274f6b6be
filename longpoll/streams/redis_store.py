"""Users and statuses in Redis, in the book's shape, changed only by Lua scripts.

Keys as in *Redis in Action* chapter 8: ``user:<id>`` and ``status:<id>``
hashes, the ``users:`` login index (lower case), the ``user:id:`` and
``status:id:`` counters; plus ``tokens:`` (token digest -> user id).  Each
write is one script, so two users racing for a login, or two deletes of one
status, cannot interleave; and a status is appended to the stream in the same
script that stores it.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import redis

from ..backends.redis import RedisLog, unavailable_as_503
from ..errors import Conflict, Forbidden, NotFound
from .store import TOPIC, bad_token, digest, new_token

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
return {uid, redis.call('HGET', 'user:' .. uid, 'token')}
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

POST_STATUS = WITH_POSTED + """
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
redis.call('HSET', 'status:' .. id, unpack(fields))
redis.call('HINCRBY', user, 'posts', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 't', ARGV[6], 'd', with_posted(status, ARGV[3]))
return {id, login}
"""

DELETE_STATUS = WITH_POSTED + """
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
redis.call('DEL', key)
redis.call('HINCRBY', 'user:' .. owner, 'posts', -1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[4], 'd', with_posted(status, posted))
return 1
"""


class RedisStore:
    def __init__(self, client: redis.Redis, log: RedisLog):
        self.client = client
        self.log = log
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

    def _author(self, token: str) -> str:
        """The author's user id, comparing token digests in constant time."""
        hashed = digest(token)
        with unavailable_as_503():
            found = self._author_of(keys=["tokens:"], args=[hashed])
        uid, stored = found if found else (None, None)
        if uid is None or stored is None or not hmac.compare_digest(stored, hashed.encode()):
            raise bad_token()
        return uid.decode()

    def post_status(self, token: str, message: str, location: str | None) -> dict[str, Any]:
        uid = self._author(token)
        posted = round(time.time(), 3)  # what Lua's cjson renders exactly (14 significant digits)
        with unavailable_as_503():
            answer = self._post(keys=["status:id:", self.log.stream],
                                args=[uid, message, repr(posted), location or "", self.log.retention, TOPIC])
        if not answer:
            raise bad_token()
        status_id, login = answer
        status = {"id": int(status_id), "uid": int(uid), "login": login.decode(), "message": message,
                  "posted": posted}
        if location is not None:
            status["location"] = location
        return status

    def delete_status(self, token: str, status_id: int) -> dict[str, Any]:
        uid = self._author(token)
        with unavailable_as_503():
            answer = self._delete(keys=[self.log.stream], args=[status_id, uid, self.log.retention, TOPIC])
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
        raw = {k.decode(): v.decode() for k, v in fields.items()}
        status: dict[str, Any] = {"id": int(raw["id"]), "uid": int(raw["uid"]), "login": raw["login"],
                                  "message": raw["message"], "posted": float(raw["posted"])}
        if "location" in raw:
            status["location"] = raw["location"]
        return status
