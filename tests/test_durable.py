"""Durable sessions against a real Redis: an app's feeds continue in any process, and what attacks found.

Most tests run two "processes" in this one (``inproc.py``) where the interleaving must be exact; the
deployment itself (real processes, restarts, a proxy) is in test_deployment.py and test_chaos.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from longpoll import Expired
from longpoll.endpoint import endpoint_of
from longpoll.lifecycle import RECORD_MARGIN, Held
from longpoll.params import NO_BODY
from longpoll.session import Poll
from longpoll.testing import Client, PollError, settle
from longpoll.waits import THREADS, Call
from tests.conftest_support import wait_until
from tests.inproc import Process, chat
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess
from tests.streams_helpers import Stream, post, signup, unique


@pytest.fixture
def redis_url(server) -> str:
    if server["redis"] is None:
        pytest.skip("needs redis-server")
    return server["redis"].url


@pytest.fixture
def prefix() -> str:
    return unique("t") + ":"


@pytest.fixture
def pair(redis_url: str, prefix: str) -> Iterator[tuple[Process, Process]]:
    one, two = Process(redis_url, prefix, chat), Process(redis_url, prefix, chat)
    yield one, two
    one.stop()
    two.stop()


def record(process: Process, key: str) -> dict:
    raw = process.backend.redis.hgetall(process.backend.prefix + "session:" + key)
    return {k.decode(): v for k, v in raw.items()}


def test_a_feed_session_continues_in_another_process_and_after_a_restart(pair, redis_url, prefix):
    one, two = pair
    client = Client(one["room"], room="r1")
    client.poll()
    assert client.key.startswith("D")  # a recipe: any process can continue it
    for n in range(3):
        one.broker.publish("chat", {"room": "r1", "n": n})
        one.broker.publish("chat", {"room": "r2", "n": n})
    assert client.take(3) == [{"room": "r1", "n": n} for n in range(3)]
    client.target = two["room"]  # the next poll reaches the other process
    for n in range(3, 6):
        two.broker.publish("chat", {"room": "r1", "n": n})
    assert client.take(3) == [{"room": "r1", "n": n} for n in range(3, 6)]
    one.stop()
    three = Process(redis_url, prefix, chat)  # a restart: a process that never saw the session
    try:
        three.broker.publish("chat", {"room": "r1", "n": 6})
        client.target = three["room"]
        assert client.take(1) == [{"room": "r1", "n": 6}]
        client.target = two["room"]  # and back: its old copy went stale, and is let go
        two.broker.publish("chat", {"room": "r1", "n": 7})
        assert client.take(1) == [{"room": "r1", "n": 7}]
        assert [m["n"] for m in client.items] == list(range(8)) and not client.gaps
    finally:
        three.stop()


def test_a_filtering_generator_waits_for_a_match_and_skips_the_rest(pair):
    one, _ = pair
    client = Client(one["room"], room="r1")
    client.poll()
    answer: dict = {}
    holder = threading.Thread(target=lambda: answer.update(client.poll(timeout=20)))
    holder.start()
    one.wait_held("room", client.key)
    one.broker.publish("chat", {"room": "elsewhere"})  # wakes it; its filter finds nothing; it waits on
    one.broker.publish("chat", {"room": "r1", "n": 1})
    holder.join(20)
    assert answer["items"] == [{"room": "r1", "n": 1}]


@pytest.mark.parametrize("trial", range(10))
def test_the_newer_poll_elsewhere_waits_for_data_and_the_older_answers_at_once(pair, trial):
    """PROTOCOL.md: the newer poll wins and waits; it is never released by the notice that released the older
    one (its own process's notice once released it, in 15 of 30 trials)."""
    one, two = pair
    client = Client(one["news"])
    client.poll()
    older: dict = {}
    held = threading.Thread(target=lambda: older.update(client._send({"key": client.key, "cursor": client.cursor,
                                                                           "timeout": 30})[1]))
    held.start()
    one.wait_held("news", client.key)
    newer: dict = {}
    other = Client(two["news"])
    other.key, other.cursor = client.key, client.cursor
    waiting = threading.Thread(target=lambda: newer.update(other.poll(timeout=30)))
    waiting.start()
    held.join(10)
    assert not held.is_alive() and older["items"] == []  # released at once, not after its 30 s
    two.wait_held("news", client.key)  # still waiting: not released by anyone's notice
    two.broker.publish("news", trial)
    waiting.join(10)
    assert newer["items"] == [trial]


def test_a_stale_copy_is_only_let_go_and_the_shared_session_lives_on(pair, prefix):
    """Mixing processes deleted the shared record: a process that found its copy stale closed it, and the
    close deleted the session for everyone."""
    one, two = pair
    client = Client(one["news"])
    client.poll()
    for process, item in ((one, "a"), (two, "b"), (one, "c"), (two, "d"), (one, "e")):
        client.target = process["news"]
        process.broker.publish("news", item)
        client.take(1)
        assert record(one, client.key)["holder"], "the record must survive every move"
    assert client.items == list("abcde")
    stale = one.registry("news").get(client.key)
    assert stale is not None
    two.registry("news").close_all()  # the other process's copy closes (expiry, a stop): nothing is deleted
    assert record(one, client.key)
    one.broker.publish("news", "f")
    client.target = two["news"]
    assert client.take(1) == ["f"]


def test_a_retry_after_redis_lost_the_last_write_goes_on_with_a_gap_never_a_400(pair):
    """After a Redis restart, a poll with the client's last cursor got 400 for ever after (1 run in 5)."""
    one, two = pair
    client = Client(one["news"])
    client.poll()
    one.broker.publish("news", 1)
    client.take(1)
    before = record(one, client.key)
    one.broker.publish("news", 2)
    client.take(1)
    key = one.backend.prefix + "session:" + client.key
    one.backend.redis.delete(key)
    one.backend.redis.hset(key, mapping=before)  # Redis came back without the last write
    one.backend.redis.expire(key, 60)
    for process in (two, one):
        client.target = process["news"]
        process.broker.publish("news", f"after on {process is one}")
        body = client.poll(timeout=5)
        assert body["items"], body
    assert client.gaps >= 1  # said, not silent
    assert client.items[:2] == [1, 2] and client.items[-2:] == ["after on False", "after on True"]


def test_a_key_of_a_process_local_session_says_why_elsewhere(pair):
    one, two = pair
    client = Client(one["counter"])
    client.poll()
    assert client.key.startswith("L")
    client.target = two["counter"]
    with pytest.raises(Expired, match="kept by the server process that made it"):
        client.poll()


def test_a_recipe_that_yields_an_item_of_its_own_is_kept_here_and_said_so_elsewhere(pair):
    one, two = pair
    client = Client(one["mixed"])
    client.poll()
    assert client.key.startswith("D")
    one.broker.publish("news", "mine")
    assert client.take(2) == ["mine", {"own": True}]
    assert orjson.loads(record(one, client.key)["state"])["local"] is True
    other = Client(two["mixed"])
    other.key, other.cursor = client.key, client.cursor
    with pytest.raises(Expired, match="kept by the server process that made it"):
        other.poll()
    with pytest.raises(PollError, match="cannot be resumed"):  # and here: it cannot wait on its feed any more
        client.poll(timeout=0)


def test_a_key_works_only_at_the_endpoint_that_made_it(pair):
    one, two = pair
    client = Client(one["news"])
    client.poll()
    for process in (one, two):
        other = Client(process["room"], room="r1")
        other.key, other.cursor = client.key, client.cursor
        with pytest.raises(PollError) as refused:
            other.poll()
        assert refused.value.status == 403 and "another endpoint" in refused.value.body["message"]


def test_backfill_starts_with_the_newest_items(pair):
    one, two = pair
    for n in range(10):
        one.broker.publish("news", n)
    client = Client(one["news"], backfill="3")
    client.poll()
    assert client.items == [7, 8, 9]
    client.target = two["news"]  # a rebuild does not backfill again
    two.broker.publish("news", 10)
    assert client.take(1) == [10] and client.items == [7, 8, 9, 10]


def test_a_session_resumed_behind_its_topics_retention_says_gap_and_goes_on(redis_url, prefix):
    one, two = Process(redis_url, prefix, chat, retention=5), Process(redis_url, prefix, chat, retention=5)
    try:
        client = Client(one["news"])
        client.poll()
        one.broker.publish("news", 0)
        client.take(1)
        one.stop()  # the process goes; the client is slow; the topic keeps its newest 5
        for n in range(1, 40):
            two.broker.publish("news", n)
        two.backend.redis.xtrim(two.broker.log.topic_stream("news"), maxlen=5, approximate=False)
        client.target = two["news"]
        body = client.poll(timeout=5)
        assert body.get("gap") is True and body["items"][0] == 35 and body["items"][-1] == 39
    finally:
        one.stop()
        two.stop()


def test_one_round_trip_per_continuation_poll_on_the_process_that_served_the_last(pair):
    one, _ = pair
    client = Client(one["news"])
    client.poll()
    for n in range(3):
        one.broker.publish("news", n)
    settle(one.broker)
    client.take(3, poll_timeout=0)
    commands = one.backend.redis.info("commandstats")
    before = {name: stats["calls"] for name, stats in commands.items()}
    polls = 20
    for n in range(polls):
        one.broker.publish("news", n)
        settle(one.broker)
        client.poll()
    after = {name: stats["calls"] for name, stats in one.backend.redis.info("commandstats").items()}
    scripts = after.get("cmdstat_evalsha", 0) - before.get("cmdstat_evalsha", 0)
    # each publish is one script too, and other tests share this Redis: count what a poll could have cost
    assert scripts <= 2 * polls, f"{scripts} scripts for {polls} polls and {polls} publishes"
    assert after.get("cmdstat_hgetall", 0) == before.get("cmdstat_hgetall", 0)


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


def test_every_key_longpoll_writes_is_under_its_prefix(pair, prefix):
    one, two = pair
    client = Client(one["room"], room="r1")
    client.poll()
    one.broker.publish("chat", {"room": "r1"})
    client.take(1)
    client.target = two["room"]
    two.broker.publish("chat", {"room": "r1"})
    client.take(1)
    keys = [k.decode() for k in one.backend.redis.scan_iter(match=prefix + "*")]
    assert {k.split(":")[1] for k in keys} >= {"log", "session"}
    everything = redis.Redis.from_url(one.backend.url)
    strays = [k for k in everything.scan_iter() if k.decode().startswith(("session:", "longpoll:log", "epoch"))]
    assert not strays


def test_two_polls_of_one_key_in_one_process_store_their_batches_one_after_the_other(redis_url, prefix):
    """A stream and the stream replacing it, in one process, stored at the same moment: the second commit,
    compared with the batch number the first had just stored, took this process's copy for stale and let it
    go, which released the newer stream (it ended at once, empty). Redis holding writes for a moment (CLIENT
    PAUSE, on a Redis of this test's own) makes both commits wait there together. (``redis_url``: the engine
    runs, which starts the hubs.)"""
    private = RedisProcess()
    one = Process(private.url, prefix, chat)
    try:
        client = Client(one["news"])
        client.poll()
        one.broker.publish("news", 1)
        settle(one.broker)
        endpoint = endpoint_of(one["news"])
        session = endpoint.registry.get(client.key)
        poll = Poll(client.cursor)
        batch = session.poll(poll)
        assert batch.count == 1 and session.stored != session.seq  # taken, not yet stored
        answers: list[Any] = []

        def settling() -> None:
            held = Held(session, session.tag, 60, endpoint._rebuild, new=False)
            answers.append(THREADS.run(endpoint.lifecycle.settle(held, batch, poll)))

        one.backend.redis.execute_command("CLIENT", "PAUSE", 1000, "WRITE")
        threads = [threading.Thread(target=settling) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert answers == [batch, batch]  # both go out; neither is told another process has the session
        assert endpoint.registry.get(client.key) is session and record(one, client.key)["seq"] == b"%d" % session.seq
    finally:
        one.stop()
        private.stop()


def test_a_durable_session_lives_its_idle_timeout_and_the_stated_margin_no_longer(pair, prefix):
    """The record lived idle_timeout + 65 s: a session nobody polled came back to life a minute late."""
    one, two = pair
    for process in pair:
        process.registry("news").configure(idle_timeout=1)
    client = Client(one["news"])
    client.poll()
    one.broker.publish("news", 1)
    client.take(1)
    assert 0 < one.backend.redis.pttl(prefix + "session:" + client.key) <= (1 + RECORD_MARGIN) * 1000
    wait_until(lambda: not record(one, client.key), timeout=1 + RECORD_MARGIN + 3, what="the record to expire")
    other = Client(two["news"])
    other.key, other.cursor = client.key, client.cursor
    with pytest.raises(Expired):
        other.poll()


def test_a_poll_held_longer_than_the_record_would_live_extends_it_first(pair, prefix):
    one, _ = pair
    one.registry("news").configure(idle_timeout=1)
    client = Client(one["news"])
    client.poll()
    answer: dict = {}
    holder = threading.Thread(target=lambda: answer.update(client.poll(timeout=30)))
    holder.start()
    one.wait_held("news", client.key)
    assert one.backend.redis.pttl(prefix + "session:" + client.key) > 25_000  # the wait's length, and more
    one.broker.publish("news", "late")
    holder.join(10)
    assert answer["items"] == ["late"]


def _started(process: Process, key: str, cursor: str, until: str) -> tuple[Any, Call]:
    """A poll of ``process`` driven by hand up to the backend call named ``until`` (not made yet)."""
    steps = endpoint_of(process["news"]).steps("GET", (), {"key": key, "cursor": cursor, "timeout": "20"}, {},
                                               NO_BODY, lambda: "127.0.0.1")
    step = next(steps)
    while not (isinstance(step, Call) and step.fn.__name__ == until):
        assert isinstance(step, Call), step
        step = steps.send(step.fn(*step.args))
    return steps, step


def _rest(steps: Any, step: Any) -> Any:
    while True:
        sent = yield step
        try:
            step = steps.send(sent)
        except StopIteration as stop:
            return stop.value


@pytest.mark.parametrize("trial", range(3))
def test_the_newer_poll_wins_when_the_older_claims_the_session_after_it_began(pair, trial):
    """PROTOCOL.md: the newer poll wins.  The older poll, on another process, read the session and claimed it
    only after the newer poll began on the process holding it: the claim's notice released the newer poll,
    and the older one got the batch (4 of 160 rounds of two polls within 50 ms)."""
    one, two = pair
    client = Client(one["news"])
    client.poll()
    steps, claim = _started(two, client.key, client.cursor, "claim")  # the older poll, about to claim
    newer: dict = {}
    waiting = threading.Thread(target=lambda: newer.update(client.poll(timeout=20)))
    waiting.start()
    one.wait_held("news", client.key)
    older: list = []
    claiming = threading.Thread(target=lambda: older.append(THREADS.run(_rest(steps, claim))))
    claiming.start()
    wait_until(lambda: record(one, client.key).get("lease") == b"2", what="the newer poll to take it back")
    one.wait_held("news", client.key)
    one.broker.publish("news", trial)
    waiting.join(10)
    claiming.join(10)
    assert newer["items"] == [trial]
    status, _, body = older[0]
    assert status == 200 and orjson.loads(body)["items"] == []


def test_a_session_rebuilt_after_redis_lost_its_data_replays_nothing_of_the_lost_log(redis_url, prefix):
    """A session rebuilt from its key starts at the log's oldest position: of the log there is now.  This
    process's history of the lost log (kept since another session was taken over here) was replayed to it
    first, items its client already had, when the rebuild came before the hub's next look at the epoch."""
    private = RedisProcess()
    one, two = Process(private.url, prefix, chat), Process(private.url, prefix, chat)
    try:
        kept, rebuilt = Client(two["news"]), Client(two["news"])
        kept.poll()
        rebuilt.poll()
        for n in range(3):
            two.broker.publish("news", n)
        assert rebuilt.take(3) == [0, 1, 2]
        kept.target = one["news"]  # taken over on one: one keeps the history of "news" it replayed
        assert kept.take(3) == [0, 1, 2]
        redis.Redis.from_url(private.url).flushall()  # the hubs read on, none has looked at the epoch yet
        one.broker.publish("news", "after")
        rebuilt.target = one["news"]  # no copy on one, no record: rebuilt from its key, at the oldest
        assert rebuilt.take(1) == ["after"]
        assert rebuilt.items == [0, 1, 2, "after"] and rebuilt.gaps
    finally:
        one.stop()
        two.stop()
        private.stop()


def test_a_session_redis_lost_is_rebuilt_from_its_key_and_nothing_else_is(redis_url, prefix):
    """FLUSHALL is what a Redis restarted without its data looks like. (``redis_url``: the engine runs.)"""
    private = RedisProcess()
    one, two = Process(private.url, prefix, chat), Process(private.url, prefix, chat)
    try:
        client = Client(one["room"], room="r1")
        client.poll()
        one.broker.publish("chat", {"room": "r1", "n": 0})
        assert client.take(1) == [{"room": "r1", "n": 0}]
        client.target = two["room"]  # both processes know the deployment's secret
        one.broker.publish("chat", {"room": "r1", "n": 1})
        assert client.take(1) == [{"room": "r1", "n": 1}]
        key, cursor = client.key, client.cursor
        private_client = redis.Redis.from_url(private.url)
        private_client.flushall()

        def poll(process: Process, name: str, key: str, cursor: str) -> tuple[int, dict]:
            other = Client(process[name], room="r1") if name == "room" else Client(process[name])
            return other._send({"key": key, "cursor": cursor, "timeout": 0})

        forged = key[:30] + ("A" if key[30] != "A" else "B") + key[31:]
        assert poll(two, "room", forged, cursor)[0] == 410
        assert poll(two, "news", key, cursor)[0] == 410  # another endpoint's
        assert poll(two, "room", key[:25], cursor)[0] == 410  # the plain key: nothing to rebuild from
        assert poll(two, "room", key, "7." + cursor.partition(".")[2])[0] == 400  # a cursor it never issued
        two.broker.publish("chat", {"room": "r1", "n": 2})
        assert client.take(1) == [{"room": "r1", "n": 2}]
        assert client.gaps  # said: what was published while Redis lost it is gone
        assert record(two, client.key)  # stored again
        client.target = one["room"]
        one.broker.publish("chat", {"room": "r1", "n": 3})
        assert client.take(1) == [{"room": "r1", "n": 3}]

        made = Client(one["room"], room="r1")  # made in this Redis's life, then ended: 410, never rebuilt
        made.poll()
        private_client.delete(prefix + "session:" + made.key)
        one.registry("room").close_all()
        assert poll(two, "room", made.key, made.cursor)[0] == 410
    finally:
        one.stop()
        two.stop()
        private.stop()
