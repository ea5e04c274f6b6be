"""The status streams' keys on Redis: all under the store's prefix, all named to scripts in KEYS.

Each test has a redis-server of the module's own, emptied before it, so
that a SCAN sees only what the test wrote.  The store runs as an ACL user
that may touch only keys matching its prefix, so a key outside it, read or
written, from Python or from a script, is an error, not just a leftover.

That alone cannot tell a key passed in ``KEYS`` from one a script builds with
the prefix it was given in ``ARGV``: Redis checks ACL key patterns against
every key a script's ``redis.call`` touches, declared or not.  So the scripts
also run with a prelude that asks Redis (``COMMAND GETKEYS``) which keys each
``redis.call`` touches and raises on any not in ``KEYS``: the property Redis
Cluster needs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from redis.commands.core import Script

from longpoll.backends.redis import RedisLog
from longpoll.errors import BadParameter, Conflict, Forbidden, NotFound, Unauthorized
from longpoll.server.streams.redis_store import RedisStore
from longpoll.server.streams.social import SocialLimits
from tests.redisproc import RedisProcess

PREFIX = "app1:lp:"

DECLARED_ONLY = """
local declared = {}
for _, name in ipairs(KEYS) do declared[name] = true end
local function checked(call)
  return function(command, ...)
    local ok, names = pcall(redis.call, 'COMMAND', 'GETKEYS', command, ...)
    local keyless = select('#', ...) == 0  -- TIME: GETKEYS refuses a command without arguments
    if not ok and not keyless and not string.find(tostring(names.err or names), 'no key arguments', 1, true) then
      error('COMMAND GETKEYS ' .. command .. ': ' .. tostring(names.err or names))
    end
    for _, name in ipairs(ok and names or {}) do
      if not declared[name] then error('undeclared key ' .. name) end
    end
    return call(command, ...)
  end
end
local redis = setmetatable({call = checked(redis.call), pcall = checked(redis.pcall)}, {__index = redis})
"""
"""Prepended to each script: a ``redis.call`` on a key not in KEYS raises (``redis`` is shadowed for the chunk)."""


class DeclaredOnly(redis.Redis):
    """A client whose scripts run under the DECLARED_ONLY prelude."""

    def register_script(self, script: str | bytes) -> Any:
        return super().register_script(DECLARED_ONLY + (script.decode() if isinstance(script, bytes) else script))


@pytest.fixture(scope="module")
def redis_proc() -> Iterator[RedisProcess]:
    proc = RedisProcess()
    yield proc
    proc.stop()


@pytest.fixture
def admin(redis_proc: RedisProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_proc.port)
    client.flushall()
    yield client
    client.close()


def confined(admin: redis.Redis, port: int, prefix: str, checked: bool = True) -> redis.Redis:
    """A client logged in as a user that may touch only keys under ``prefix``."""
    user, password = prefix.replace(":", "_"), secrets.token_hex(8)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=[f"{prefix}*"], commands=["+@all"],
                      reset=True)
    return (DeclaredOnly if checked else redis.Redis)(port=port, username=user, password=password)


def open_store(client: redis.Redis, prefix: str, limits: SocialLimits = SocialLimits()) -> RedisStore:
    """A store and its log (the broker's, named here under the prefix too), as ``open_store`` makes one."""
    return RedisStore(client, RedisLog(client, prefix), limits, prefix=prefix)


def drain(store: RedisStore, most: int = 1000) -> int:
    """Run syndication passes until the queue is empty; how many there were."""
    for passes in range(most):
        if not store.syndicate_pass():
            return passes
    raise AssertionError(f"syndication still had jobs after {most} passes")


def drive(store: RedisStore, fans: int) -> None:
    """Every public method of the store, and every branch of its scripts that touches a key."""
    author = store.create_user("Author", "The Author")
    with pytest.raises(Conflict):
        store.create_user("AUTHOR", "Taken")
    other = store.create_user("other", "Someone Else")
    followers = [store.create_user(f"fan{i}", f"Fan {i}") for i in range(fans)]
    for fan in followers:
        assert store.follow(fan["token"], "author") is True
    assert store.follow(followers[0]["token"], "Author") is False  # already following
    assert store.follow(author["token"], "other") is True
    with pytest.raises(BadParameter):
        store.follow(author["token"], "author")
    with pytest.raises(NotFound):
        store.follow(author["token"], "nobody")
    with pytest.raises(Unauthorized):
        store.follow("not a token", "author")
    assert store.authenticate(author["token"]) == author["id"]
    assert store.stream_salt(author["id"]) is None  # made with the first stream token, not at signup
    salt = store.stream_salt(author["id"], make=True)
    assert len(salt) == 16 and store.stream_salt(author["id"], make=True) == store.stream_salt(author["id"]) == salt
    assert store.stream_salt(10_000, make=True) is None  # no such user: no record is made for its salt

    plain = store.post_status(author["token"], "hello", None)
    placed = store.post_status(author["token"], "from here", "Paris", lambda status: {"place": "a café"})
    elsewhere = store.post_status(other["token"], "not yours", None)
    last = followers[-1]
    snapshot = store.home_snapshot(last["id"], 10)  # before syndication: the pending jobs are in it
    assert [s["id"] for s in snapshot.backfill] == [plain["id"], placed["id"]]
    assert snapshot.following == {author["id"]} and snapshot.sid == elsewhere["id"]
    assert store.home_snapshot(author["id"], 10).backfill[-1]["id"] == elsewhere["id"]
    assert store.syndication_pending() == 3
    assert drain(store) >= 2 * -(-fans // store.social_limits.fanout_per_pass) + 1  # more than one pass per post
    store.wait_for_jobs(0.01)
    assert [s["id"] for s in store.timeline("home", last["id"], 1, 10)] == [placed["id"], plain["id"]]
    assert store.get_status(placed["id"])["location"] == "Paris"
    assert store.get_status(placed["id"])["place"] == "a café"

    with pytest.raises(Forbidden):
        store.delete_status(other["token"], plain["id"])
    store.delete_status(author["token"], plain["id"])
    with pytest.raises(NotFound):
        store.delete_status(author["token"], plain["id"])
    with pytest.raises(NotFound):
        store.get_status(plain["id"])
    again = store.post_status(author["token"], "deleted before its fan-out", None)
    store.delete_status(author["token"], again["id"])
    store.client.rpush(store.key("syndicate"), b"not a job")
    drain(store)
    assert [s["id"] for s in store.timeline("home", last["id"], 1, 10)] == [placed["id"]]
    assert [s["id"] for s in store.timeline("profile", author["id"], 1, 10)] == [placed["id"]]

    page, cursor = store.connections("author", "followers", None, 10)
    assert [u["login"] for u in page] == [f"fan{i}" for i in range(fans - 1, fans - 11, -1)] and cursor is not None
    assert store.connections("author", "followers", cursor, 10)[0][0]["login"] == f"fan{fans - 11}"
    assert [u["login"] for u in store.connections("author", "following", None, 10)[0]] == ["other"]
    assert store.user("AUTHOR")["followers"] == fans and store.user_name(author["id"]) == "The Author"
    assert store.unfollow(last["token"], "author") is True
    assert store.unfollow(last["token"], "author") is False
    assert store.timeline("home", last["id"], 1, 10) == []
    assert store.user("author")["followers"] == fans - 1


def kinds(names: list[bytes], prefix: str) -> set[str]:
    """Key names without the prefix and the ids: ``user:``, ``status:id:``, ..."""
    return {name.decode()[len(prefix):].rstrip("0123456789") for name in names}


def test_every_key_is_under_the_prefix(admin, redis_proc):
    limits = SocialLimits()
    store = open_store(confined(admin, redis_proc.port, PREFIX, checked=False), PREFIX, limits)
    drive(store, fans=limits.fanout_per_pass + 20)
    names = list(admin.scan_iter("*", count=1000))
    assert [n for n in names if not n.startswith(PREFIX.encode())] == []
    assert kinds(names, PREFIX) == {"users:", "tokens:", "user:id:", "status:id:", "user:", "status:", "profile:",
                                    "home:", "followers:", "following:", "log", "log:statuses", "log:graph"}


def test_scripts_touch_only_the_keys_they_are_given(admin, redis_proc):
    limits = SocialLimits(fanout_per_pass=3)  # many passes, some of them continuing the same author's job
    store = open_store(confined(admin, redis_proc.port, PREFIX), PREFIX, limits)
    scripts = [v for v in vars(store).values() if isinstance(v, Script)]
    assert len(scripts) == 9 and all(script.script.startswith(DECLARED_ONLY) for script in scripts)
    drive(store, fans=11)


def test_the_check_catches_a_key_built_in_a_script(admin, redis_proc):
    client = confined(admin, redis_proc.port, PREFIX)
    built = client.register_script("return redis.call('HGET', ARGV[1] .. 'user:' .. ARGV[2], 'name')")
    with pytest.raises(redis.ResponseError, match=f"undeclared key {PREFIX}user:7"):
        built(keys=[f"{PREFIX}users:"], args=[PREFIX, 7])
    assert client.register_script("return redis.call('HGET', KEYS[1], 'name')")(keys=[f"{PREFIX}user:7"]) is None


def test_two_prefixes_on_one_database_do_not_see_each_other(admin):
    one, two = open_store(admin, "app1:lp:"), open_store(admin, "app2:lp:")
    ann, other_ann = one.create_user("ann", "Ann One"), two.create_user("ann", "Ann Two")
    bob = one.create_user("bob", "Bob")
    assert ann["id"] == other_ann["id"] == 1
    one.follow(bob["token"], "ann")
    posted = one.post_status(ann["token"], "only in one", None)
    drain(one)
    assert two.syndication_pending() == 0 and drain(two) == 0
    with pytest.raises(NotFound):
        two.get_status(posted["id"])
    with pytest.raises(NotFound):
        two.user("bob")
    with pytest.raises(Unauthorized):
        two.post_status(ann["token"], "one's token", None)
    assert two.user("ann") | {"signup": 0} == {"id": 1, "login": "ann", "name": "Ann Two", "followers": 0,
                                               "following": 0, "posts": 0, "signup": 0}
    assert two.timeline("profile", 1, 1, 10) == [] and two.home_snapshot(1, 10).backfill == []
    assert [s["id"] for s in one.timeline("home", bob["id"], 1, 10)] == [posted["id"]]
    assert two.post_status(other_ann["token"], "first in two", None)["id"] == 1
    assert one.get_status(1)["message"] == "only in one"


def test_status_ids_follow_the_log_when_two_processes_post(admin):
    """Each store guesses the next id; a guess another post took is retried, never logged out of order."""
    one, two = open_store(admin, PREFIX), open_store(admin, PREFIX)
    token = one.create_user("ann", "Ann")["token"]
    ids = [(one if i % 3 else two).post_status(token, f"m{i}", None)["id"] for i in range(12)]
    assert ids == list(range(1, 13))
    assert [orjson.loads(fields[b"d"])["id"] for _, fields in admin.xrange(f"{PREFIX}log")] == ids


def test_a_pass_skips_a_follower_gone_since_it_read_them(admin):
    """Followers are read before the pass that writes their timelines: one who left in between is not written."""
    store = open_store(admin, PREFIX, SocialLimits(fanout_per_pass=3))
    author = store.create_user("author", "Author")
    fans = [store.create_user(f"fan{i}", f"Fan {i}") for i in range(9)]
    for fan in fans:
        store.follow(fan["token"], "author")
    first = store.post_status(author["token"], "one", None)
    second = store.post_status(author["token"], "two", None)
    assert store.syndicate_pass()  # the first 3 of the first post; the next job's followers read with it
    assert store._ahead is not None and store._ahead[1] is not None  # the second post's first 3, read with it
    assert store._ahead[1][0] == b",".join(str(f["id"]).encode() for f in fans[:3])
    store.unfollow(fans[1]["token"], "author")
    drain(store)
    for fan in fans:
        home = [s["id"] for s in store.timeline("home", fan["id"], 1, 10)]
        assert home == ([] if fan is fans[1] else [second["id"], first["id"]]), fan["login"]


def test_a_pass_another_process_did_first_changes_nothing(admin):
    limits = SocialLimits(fanout_per_pass=2)
    one, two = open_store(admin, PREFIX, limits), open_store(admin, PREFIX, limits)
    author = one.create_user("author", "Author")
    fans = [one.create_user(f"fan{i}", f"Fan {i}") for i in range(5)]
    for fan in fans:
        one.follow(fan["token"], "author")
    posted = one.post_status(author["token"], "once", None)
    one.post_status(author["token"], "twice", None)
    assert one.syndicate_pass() and one._ahead is not None  # one has read the next job and its followers
    assert two.syndicate_pass()  # ... which two does first
    jobs = admin.lrange(f"{PREFIX}syndicate", 0, -1)
    assert one.syndicate_pass() and admin.lrange(f"{PREFIX}syndicate", 0, -1) == jobs  # lost the race: did nothing
    drain(one)
    for fan in fans:
        assert [s["id"] for s in one.timeline("home", fan["id"], 1, 10)] == [posted["id"] + 1, posted["id"]]


def test_idempotent_appends_touch_only_declared_keys_under_the_prefix(admin, redis_proc):
    log = RedisLog(confined(admin, redis_proc.port, PREFIX), PREFIX, "topics", idempotency_keys=2)
    first = log.append_json("news", b'"a"', key="k1")
    assert log.append_json("news", b'"a"', key="k1") == first
    assert log.many([(log.append_json, "news", b'"b"', "k2"), (log.append_json, "news", b'"c"', "k3"),
                     (log.append_json, "news", b'"d"')])[0] != first  # past two keys: the oldest goes
    assert log.append_json("news", b'"a"', key="k1") != first
    names = list(admin.scan_iter("*", count=1000))
    assert kinds(names, PREFIX) == {"topics", "topics:news", "topics-idempotency", "topics-idempotency-ends"}
    assert admin.hlen(f"{PREFIX}topics-idempotency") == admin.zcard(f"{PREFIX}topics-idempotency-ends") == 2
    assert 0 < admin.pttl(f"{PREFIX}topics-idempotency") <= 24 * 3600 * 1000
