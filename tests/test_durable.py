"""Durable sessions against a real Redis: rebuild, resend, compare-and-set."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from longpoll.durable import RedisSessionStore
from longpoll.errors import Expired, Forbidden
from longpoll.registry import Registry
from longpoll.streams.feed import StatusFeed
from longpoll.streams.filters import Sample
from longpoll.streams.store import TOPIC
from tests.conftest_support import wait_until
from tests.procs import ServerProcess
from tests.streams_helpers import Stream, post, settle, signup, unique


@pytest.fixture
def redis_broker(server):
    if "redis" not in server["brokers"]:
        pytest.skip("needs redis-server")
    return server["brokers"]["redis"]


def status(n: int) -> dict:
    return {"id": 10_000_000 + n, "uid": 1, "login": "d", "message": f"durable {n}", "posted": 0.0}


def resumer(broker):
    def resume(definition, position):
        return StatusFeed(broker, Sample(definition["identifier"], 100), definition, position)

    return resume


def two_processes(broker, ttl: float = 60) -> tuple[Registry, Registry, RedisSessionStore]:
    """Two registries on one store: what two server processes hold of the same sessions."""
    store = RedisSessionStore(broker.redis, ttl=ttl, prefix=unique("test-session-") + ":")
    return Registry(store=store), Registry(store=store), store


def test_an_older_poll_cannot_commit_after_a_newer_one_began_elsewhere(redis_broker):
    one, two, _ = two_processes(redis_broker)
    resume = resumer(redis_broker)
    a = one.create(resume({"identifier": unique("dur")}, None), ("ep", "x"))
    _, old_ticket = one.lease(a.key, resume=resume)  # a poll begins in process one...
    b, new_ticket = two.lease(a.key, resume=resume)  # ...and the client's newer poll in process two
    redis_broker.publish(TOPIC, status(1))
    settle(redis_broker)
    released = one.poll(a, "0", 1, 10, old_ticket)  # it pulled the status, but may not commit it
    assert released.items == [] and released.cursor == "0"
    assert a.closed  # its copy went ahead of the store: dropped
    newer = two.poll(b, "0", 1, 10, new_ticket)
    assert [i["id"] for i in newer.items] == [status(1)["id"]]
    one.close_all()
    two.close_all()


def test_the_same_batch_committed_first_is_sent_again_to_the_newer_poll(redis_broker):
    one, two, _ = two_processes(redis_broker)
    resume = resumer(redis_broker)
    a = one.create(resume({"identifier": unique("dur")}, None), ("ep", "x"))
    redis_broker.publish(TOPIC, status(2))
    settle(redis_broker)
    first = one.poll(a, "0", 1, 10, one.lease(a.key, resume=resume)[1])  # answered, and the answer lost
    again, ticket = two.lease(a.key, resume=resume)  # the client retries with the same cursor elsewhere
    assert again.seq == 1
    assert two.poll(again, "0", 0, 10, ticket).items == first.items
    one.close_all()
    two.close_all()


def test_a_newer_poll_in_another_process_releases_the_held_one_at_once(redis_broker):
    one, two, store = two_processes(redis_broker)
    resume = resumer(redis_broker)
    a = one.create(resume({"identifier": unique("dur")}, None), ("ep", "x"))
    assert store.listener is not None and store.listener.subscribed.wait(10)
    answer: dict = {}

    def held() -> None:
        session, ticket = one.lease(a.key, resume=resume)
        answer["batch"] = one.poll(session, "0", 30, 10, ticket)
        answer["at"] = time.monotonic()

    holder = threading.Thread(target=held)
    holder.start()
    wait_until(lambda: a._inflight == 1 and one.gate.held > 0, what="the first poll to be held")
    began = time.monotonic()
    b, ticket = two.lease(a.key, resume=resume)  # the release goes out through Redis
    holder.join(10)
    assert not holder.is_alive() and answer["batch"].items == [] and answer["at"] - began < 5
    redis_broker.publish(TOPIC, status(3))
    assert [i["id"] for i in two.poll(b, "0", 10, 10, ticket).items] == [status(3)["id"]]
    one.close_all()
    two.close_all()


def test_a_session_ahead_of_the_store_is_not_stale(redis_broker):
    """Between a new batch and its save, the process's copy is one batch ahead of the store."""
    registry, _, store = two_processes(redis_broker)
    resume = resumer(redis_broker)
    session = registry.create(resume({"identifier": unique("dur")}, None), ("ep", "x"))
    redis_broker.publish(TOPIC, status(4))
    settle(redis_broker)
    assert session.poll("0", 1, 10).items  # batch 1, not yet saved
    assert store.load(session.key)[0]["seq"] == 0
    assert registry.lease(session.key, resume=resume)[0] is session
    registry.close_all()


def test_a_bind_tag_that_is_a_tuple_still_matches_after_a_rebuild(redis_broker):
    one, two, _ = two_processes(redis_broker)
    resume = resumer(redis_broker)
    tag = ("statuses.sample", ("alice", 7))
    a = one.create(resume({"identifier": unique("dur")}, None), tag)
    rebuilt, ticket = two.lease(a.key, tag, resume, check_tag=True)  # would be 403 if a list != the tuple
    assert rebuilt is not a
    with pytest.raises(Forbidden):
        two.lease(a.key, ("statuses.sample", ("bob", 7)), resume, check_tag=True)
    one.close_all()
    two.close_all()


def test_a_poll_held_longer_than_the_idle_timeout_keeps_its_session(durable_redis):
    """idle timeout 1 s, a poll held 3 s, a status posted at 2 s: it arrives, and the session lives on."""
    with ServerProcess("--redis", durable_redis.url, "--idle-timeout", "1") as server:
        with httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
            stream = Stream(client, "sample", percent=100)
            _, token = signup(client)
            poster = threading.Timer(2.0, lambda: post(client, token, "posted while held"))
            poster.start()
            held = stream.poll(timeout=3)
            poster.join()
            assert held.status_code == 200, held.text
            assert [i["message"] for i in stream.items] == ["posted while held"]
            after = stream.poll(timeout=0)
            assert after.status_code == 200, after.text


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
