"""Publishes with an idempotency key are stored once: in the library (``broker.publish(key=...)``) and over
HTTP (``POST /topics/<t>`` with ``Idempotency-Key``), on the embedded backend and on Redis, where two server
processes that each get one of the two publishes still store one item.  Without a key, or with another
one, a retry stores the item again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from longpoll import Broker
from longpoll.backends.memory import KEY_OVERHEAD, MemoryBackend, MemoryLog
from longpoll.backends.redis import RedisBackend
from longpoll.errors import BadParameter
from tests.conftest_support import wait_until
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess
from tests.streams_helpers import unique


@pytest.fixture(scope="module")
def redis_proc() -> Iterator[RedisProcess]:
    proc = RedisProcess()
    yield proc
    proc.stop()


@pytest.fixture(params=["memory", "redis"])
def make_broker(request: pytest.FixtureRequest, redis_proc: RedisProcess) -> Iterator:
    """Brokers on one backend; on Redis each has a backend (a client) of its own, as two processes would."""
    made: list[Broker] = []

    def make(**options: object) -> Broker:
        backend = RedisBackend(redis_proc.url, prefix=f"{unique('idem')}:") if request.param == "redis" \
            else MemoryBackend()
        broker = Broker(backend=backend, **options)  # type: ignore[arg-type]
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()
        broker.backend.close()


def stored(broker: Broker, topic: str) -> list[object]:
    return [orjson.loads(entry.raw) for entry in broker.log.newest(topic, 10, broker.log.tail())]


def test_the_same_key_twice_stores_one_item_and_answers_the_first_position(make_broker):
    broker = make_broker()
    first = broker.publish("news", {"n": 1}, key="order-17")
    again = broker.publish("news", {"n": 1}, key="order-17")
    assert again == first
    assert stored(broker, "news") == [{"n": 1}]


def test_another_key_no_key_or_another_topic_stores_again(make_broker):
    broker = make_broker()
    positions = [broker.publish("news", "a", key="one"), broker.publish("news", "a", key="two"),
                 broker.publish("news", "a"), broker.publish("news", "a"), broker.publish("sport", "a", key="one")]
    assert len(set(positions)) == 5
    assert stored(broker, "news") == ["a"] * 4 and stored(broker, "sport") == ["a"]


def test_a_key_is_decided_by_redis_for_every_process(redis_proc):
    prefix = f"{unique('idem')}:"
    one, two = (Broker(backend=RedisBackend(redis_proc.url, prefix=prefix)) for _ in range(2))
    try:
        first = one.publish("news", "x", key="k")
        assert two.publish("news", "x", key="k") == first
        assert stored(one, "news") == stored(two, "news") == ["x"]
    finally:
        for broker in (one, two):
            broker.close()
            broker.backend.close()


def test_the_oldest_keys_go_past_the_count(make_broker):
    broker = make_broker(idempotency_keys=2)
    first = broker.publish("news", 1, key="a")
    broker.publish("news", 2, key="b")
    assert broker.publish("news", 1, key="a") == first  # still remembered: two keys
    broker.publish("news", 3, key="c")  # pushes "a" out
    assert broker.publish("news", 1, key="a") != first
    assert stored(broker, "news") == [1, 2, 3, 1]


def test_a_key_is_remembered_for_its_window_then_forgotten(make_broker):
    broker = make_broker(idempotency_window=0.3)
    began = time.monotonic()
    first = broker.publish("news", "x", key="k")
    again: list[str] = []
    wait_until(lambda: again.append(broker.publish("news", "x", key="k")) or again[-1] != first, timeout=10,
               what="the key's window to end")
    assert time.monotonic() - began >= 0.3
    assert stored(broker, "news") == ["x", "x"]


def test_the_embedded_log_bounds_its_keys_in_bytes():
    per_key = KEY_OVERHEAD + len("news") + len("k0") + 1  # "k0" .. "k9", positions "1" .. "9"
    log = MemoryLog(idempotency_bytes=3 * per_key)
    positions = [log.append_json("news", b"1", key=f"k{i}") for i in range(3)]
    assert log.append_json("news", b"1", key="k0") == positions[0]
    log.append_json("news", b"1", key="k3")  # a fourth is past the bytes: k0 goes
    assert log.append_json("news", b"1", key="k0") != positions[0]


@pytest.mark.parametrize("key", ["", "x" * 256, 17])
def test_a_bad_key_is_refused(make_broker, key):
    broker = make_broker()
    with pytest.raises(BadParameter) as refused:
        broker.publish("news", "x", key=key)
    assert refused.value.param == "key"
    assert stored(broker, "news") == []


# -- over HTTP: every front of the in-process server, each backend --------------------------------------------


def backfilled(base: str, topic: str) -> list[object]:
    answer = httpx.get(f"{base}/topics/{topic}", params={"backfill": 10, "timeout": 0}, timeout=30)
    assert answer.status_code == 200, answer.text
    items: list[object] = answer.json()["items"]
    return items


def test_the_same_header_twice_stores_one_item_on_every_front(base):
    topic = unique("idem")
    headers = {"Idempotency-Key": unique("publish")}
    first = httpx.post(f"{base}/topics/{topic}", json={"n": 1}, headers=headers, timeout=30)
    again = httpx.post(f"{base}/topics/{topic}", json={"n": 1}, headers=headers, timeout=30)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.content == first.content
    assert backfilled(base, topic) == [{"n": 1}]
    assert httpx.post(f"{base}/topics/{topic}", json={"n": 1}, timeout=30).status_code == 201  # no key: again
    assert backfilled(base, topic) == [{"n": 1}, {"n": 1}]


def test_retries_arriving_together_store_one_item(base):
    """On the event loop, publishes of one moment go as one pipeline: a key's first and its retries among them."""
    topic, headers = unique("idem"), {"Idempotency-Key": unique("together")}
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post(f"{base}/topics/{topic}", json="x", headers=headers),
                                range(16)))
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.content for answer in answers}) == 1
    assert backfilled(base, topic) == ["x"]


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_a_bad_header_is_a_400_naming_it(base, key):
    topic = unique("idem")
    answer = httpx.post(f"{base}/topics/{topic}", json="x", headers={"Idempotency-Key": key}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"] == "bad_parameter" and answer.json()["param"] == "Idempotency-Key"
    assert "Idempotency-Key" in answer.json()["message"]
    assert backfilled(base, topic) == []


# -- longpoll serve: its own process, and two of them on one Redis ---------------------------------------------


def publish_twice(first: str, second: str, topic: str) -> None:
    headers = {"Idempotency-Key": unique("retry")}
    one = httpx.post(f"{first}/topics/{topic}", json="once", headers=headers, timeout=30)
    two = httpx.post(f"{second}/topics/{topic}", json="once", headers=headers, timeout=30)
    assert one.status_code == two.status_code == 201, (one.text, two.text)
    assert two.json() == one.json()


@pytest.mark.slow
def test_serve_on_the_embedded_backend_stores_a_retried_publish_once():
    with ServerProcess() as server:
        url = server.wait_ready()
        topic = unique("idem")
        publish_twice(url, url, topic)
        assert backfilled(url, topic) == ["once"]


@pytest.mark.slow
def test_two_serve_processes_on_redis_store_a_publish_retried_on_the_other_once(redis_proc):
    with ServerProcess("--redis", redis_proc.url) as one, ServerProcess("--redis", redis_proc.url) as two:
        first, second = one.wait_ready(), two.wait_ready()
        topic = unique("idem")
        publish_twice(first, second, topic)
        assert backfilled(first, topic) == ["once"]
        assert backfilled(second, topic) == ["once"]
