"""Memory under neglect: sessions nobody polls again are freed; an undrained buffer stays bounded."""

from __future__ import annotations

import gc
import time
import tracemalloc
import uuid

import pytest

from longpoll.session import Session
from longpoll.subscription import Subscription
from tests.apps import FINALLY
from tests.streams_helpers import settle

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


def tokens_and_events(count: int) -> tuple[list[str], list]:
    """The test's own bookkeeping, made before any measuring."""
    tokens = [uuid.uuid4().hex for _ in range(count)]
    return tokens, [FINALLY[t] for t in tokens]


def abandon(client, tokens: list[str]) -> None:
    """Open sessions that nobody polls again."""
    topic = "neglect-" + uuid.uuid4().hex
    for token in tokens:
        response = client.get("/t/short/many", params={"topic": topic, "token": token, "timeout": 0})
        assert response.status_code == 200


def longpoll_bytes() -> int:
    """Bytes allocated by longpoll's own code and still alive (CherryPy's per-thread
    request objects, caches and the test's client are not the subject here)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/longpoll/*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def live(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


def test_a_thousand_abandoned_sessions_give_their_memory_back(client, probe):
    registry = probe.short.many.registry
    tokens, events = tokens_and_events(1000)
    gc.collect()
    sessions, subscriptions = live(Session), live(Subscription)
    tracemalloc.start()
    try:
        baseline = longpoll_bytes()
        abandon(client, tokens)
        gc.collect()
        held = longpoll_bytes() - baseline
        assert len(registry) >= 1000
        # What the reaper does once they have been idle for idle_timeout (its own
        # timing is tested in test_polls); here, without waiting the 60 s.
        assert registry.expire(time.monotonic() + registry.idle_timeout + 1) >= 1000
        assert all(e.is_set() for e in events)
        gc.collect()
        left = longpoll_bytes() - baseline
    finally:
        tracemalloc.stop()
    print(f"\n1000 idle sessions held {held / 1024:.0f} KiB ({held / 1000:.0f} B each, with their "
          f"subscriptions); after expiry {left / 1024:.1f} KiB remain")
    assert live(Session) <= sessions and live(Subscription) <= subscriptions  # every one freed
    assert held > 500 * 1000  # the measurement sees the sessions
    assert left < held * 0.1  # and after expiry the memory is back to its baseline (dict tables keep their size)


def test_a_session_that_never_drains_stays_within_its_buffer(client, topics_broker):
    broker = topics_broker
    topic = "flood-" + uuid.uuid4().hex
    first = client.get(f"/topics/{topic}", params={"timeout": 0}).json()
    sub = next(s for s in broker.hub._routers[topic].members())
    for n in range(5000):
        broker.publish(topic, n)
    settle(broker)
    assert len(sub) == sub.maxlen == 1000  # the bound held while nobody polled
    body = client.get(f"/topics/{topic}", params={"key": first["key"], "cursor": first["cursor"],
                                                 "max": 1000}).json()
    assert body["items"] == list(range(4000, 5000))  # the newest survive
    assert body["dropped"] == 4000  # and the client is told what it lost
