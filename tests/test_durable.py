"""Durable sessions against a real Redis: rebuild, resend, compare-and-set."""

from __future__ import annotations

import pytest

from longpoll.durable import RedisSessionStore
from longpoll.errors import Conflict, Expired
from longpoll.registry import Registry
from longpoll.streams.feed import StatusFeed
from longpoll.streams.filters import Sample
from longpoll.streams.store import TOPIC
from tests.streams_helpers import settle, unique


@pytest.fixture
def redis_broker(server):
    if "redis" not in server["brokers"]:
        pytest.skip("needs redis-server")
    return server["brokers"]["redis"]


def status(n: int) -> dict:
    return {"id": 10_000_000 + n, "uid": 1, "login": "d", "message": f"durable {n}", "posted": 0.0}


def test_two_processes_committing_one_session_at_once_one_answers_409(redis_broker):
    store = RedisSessionStore(redis_broker.redis, ttl=60, prefix=unique("test-session-") + ":")
    identifier = unique("dur")

    def resume(definition, position):
        return StatusFeed(redis_broker, Sample(definition["identifier"], 100), definition, position)

    one, two = Registry(store=store), Registry(store=store)  # two processes' caches
    a = one.create(resume({"identifier": identifier}, None), ("ep", identifier))
    b = two.get(a.key, resume)  # rebuilt from the store at batch 0
    assert b is not a and b.seq == 0
    redis_broker.publish(TOPIC, status(1))
    settle(redis_broker)
    first = one.poll(a, "0", 1, 10)
    assert [i["id"] for i in first.items] == [status(1)["id"]]
    with pytest.raises(Conflict):
        two.poll(b, "0", 1, 10)  # it pulled the same status, but batch 1 is taken
    again = two.get(a.key, resume)  # rebuilt at batch 1, which it can send again
    assert again.seq == 1
    assert two.poll(again, "0", 0, 10).items == first.items
    redis_broker.publish(TOPIC, status(2))
    settle(redis_broker)
    assert [i["id"] for i in two.poll(again, first.cursor, 1, 10).items] == [status(2)["id"]]
    one.close_all()
    two.close_all()


def test_an_unknown_or_expired_key_is_410_in_every_process(redis_broker):
    store = RedisSessionStore(redis_broker.redis, ttl=30, prefix=unique("test-session-") + ":")
    registry = Registry(store=store)

    def resume(definition, position):
        return StatusFeed(redis_broker, Sample("x", 100), definition, position)

    session = registry.create(resume({"identifier": "x"}, None), ("ep", "x"))
    registry.close_all()  # this process forgets it; only the store knows it now
    assert registry.get(session.key, resume).key == session.key
    registry.close_all()
    redis_broker.redis.delete(store.prefix + session.key)  # as the TTL would
    with pytest.raises(Expired):
        registry.get(session.key, resume)
