"""Gaps are said, never silent (PROTOCOL.md): a trimmed log under a slow session, Redis losing its data."""

from __future__ import annotations

import httpx
import orjson
import pytest

from longpoll.durable import RedisSessionStore
from longpoll.registry import Registry
from longpoll.session import Session
from longpoll.signals import GAP
from longpoll.streams.feed import StatusFeed
from longpoll.streams.filters import Sample
from longpoll.streams.store import TOPIC
from tests.conftest_support import wait_until
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess
from tests.streams_helpers import Stream, post, settle, signup, unique


def status(n: int) -> dict:
    return {"id": 20_000_000 + n, "uid": 1, "login": "g", "message": f"gap {n}", "posted": 0.0}


def test_a_generator_saying_gap_makes_the_next_batch_say_it():
    def gen():
        yield 1
        yield GAP
        yield 2
        yield 3

    session = Session("k", gen())
    first = session.poll(None, 0, 10)
    assert (first.items, first.gap) == ([1], False)  # the items before the gap go first, without it
    second = session.poll(first.cursor, 0, 10)
    assert (second.items, second.gap) == ([2, 3], True)
    assert session.poll(first.cursor, 0, 10).gap  # sent again, it still says so
    assert second.to_json("k")["gap"] is True and "gap" not in first.to_json("k")


def test_a_session_rebuilt_behind_a_trimmed_log_says_gap_and_goes_on_from_the_oldest_left(server):
    if "redis" not in server["brokers"]:
        pytest.skip("needs redis-server")
    broker = server["brokers"]["redis"]
    store = RedisSessionStore(broker.redis, ttl=60, prefix=unique("gap-session-") + ":")

    def resume(definition, position):
        return StatusFeed(broker, Sample(definition["identifier"], 100), definition, position)

    one, two = Registry(store=store), Registry(store=store)
    session = one.create(resume({"identifier": unique("slow")}, None), ("ep", "x"))
    for n in range(3):
        broker.publish(TOPIC, status(n))
    settle(broker)
    first = one.poll(session, "0", 1, 10)
    assert [i["id"] for i in first.items] == [status(n)["id"] for n in range(3)] and not first.gap
    for n in range(3, 10):  # the client is slow, and meanwhile the log is trimmed (--retention)
        broker.publish(TOPIC, status(n))
    settle(broker)
    positions = {orjson.loads(e.raw).get("id"): e.position
                 for e in broker.log.range("0-0", broker.log.tail(), 100_000) if e.topic == TOPIC}
    broker.redis.xtrim(broker.log.stream, minid=positions[status(7)["id"]], approximate=False)
    one.close_all()  # its process went away; another takes the session up from the store
    rebuilt, ticket = two.lease(session.key, resume=resume)
    batch = two.poll(rebuilt, first.cursor, 1, 100, ticket)
    statuses = [i["id"] for i in batch.items if i["id"] >= 20_000_000]
    assert batch.gap and statuses == [status(n)["id"] for n in (7, 8, 9)]  # from the oldest still there
    two.close_all()


def test_a_live_session_through_a_redis_restart_that_lost_everything_says_gap_and_goes_on():
    redis_proc = RedisProcess()  # no persistence: a restart loses everything
    try:
        with ServerProcess("--redis", redis_proc.url) as server:
            with httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
                stream = Stream(client, "sample", identifier=unique("lossy"), percent=100)
                _, token = signup(client)
                before = [post(client, token, f"before {n}")["id"] for n in range(3)]
                assert stream.collect(3) == before
                assert stream.poll(timeout=0).json().get("gap") is None
                redis_proc.kill()
                redis_proc.start()  # same port, nothing in it: users, statuses, sessions, the log are gone
                wait_until(lambda: client.get("/healthz").status_code == 200, timeout=30, what="the hub back")
                _, token = signup(client)  # the user is gone too
                after = [post(client, token, f"after {n}")["id"] for n in range(3)]
                answers = []
                while len(stream.ids()) < 6:
                    answer = stream.poll(timeout=2)
                    assert answer.status_code in (200, 503), answer.text  # never 410: the session goes on
                    answers.append(answer.json())
                assert any(a.get("gap") for a in answers if "items" in a)
                assert stream.ids() == before + after
    finally:
        redis_proc.stop()
