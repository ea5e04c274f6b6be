"""History that many feeds replay is read from the log once and decoded once, on either backend.

Three hundred sessions of ``broker.feed(topic, backfill=1000)`` each decoded
their own copy of the topic's thousand items (8 MB of RSS a session for 8 KB
items).  These hold the sharing to what it must be: the log is read once per
window, every feed gets the very same item objects, a feed that reaches past
the window reads only what is missing, and what each feed replays is what it
replayed when each read the log itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from longpoll import Broker
from longpoll.testing import settle
from tests.streams_helpers import unique


@pytest.fixture(params=["mem", "redis"])
def broker(request: pytest.FixtureRequest, server: dict) -> Iterator[Broker]:
    """A broker of the test's own, on the embedded backend or the test run's redis-server."""
    if request.param == "redis" and server["redis"] is None:
        pytest.skip("redis-server is not installed")
    made = Broker(server["redis"].url if request.param == "redis" else None, name=unique("history"))
    with made.subscribe(unique("running")):  # the hub reads while a subscription lasts: settle() can wait on it
        yield made
    made.hub.stop()


def drained(feed: object) -> list:
    """What a feed has now, without waiting (``take`` never waits)."""
    got = []
    while True:
        found, item = feed.take()  # type: ignore[attr-defined]
        if not found:
            return got
        got.append(item)


def test_many_feeds_with_backfill_read_the_log_once_and_share_each_item(broker):
    topic = unique("t")
    for n in range(300):
        broker.publish(topic, {"n": n})
    settle(broker)
    read = broker.hub.history.entries_read
    feeds = [broker.feed(topic, backfill=200) for _ in range(50)]
    try:
        assert broker.hub.history.entries_read - read == 200  # one read of the window, not fifty
        replays = [drained(feed) for feed in feeds]
        assert [item["n"] for item in replays[0]] == list(range(100, 300))
        assert all(replay == replays[0] for replay in replays)
        assert all(all(a is b for a, b in zip(replay, replays[0], strict=True)) for replay in replays)  # one each
    finally:
        for feed in feeds:
            feed.close()


def test_a_feed_that_asks_for_more_reads_only_what_the_window_lacks(broker):
    topic = unique("t")
    for n in range(100):
        broker.publish(topic, n)
    settle(broker)
    first = broker.feed(topic, backfill=10)
    read = broker.hub.history.entries_read
    for n in range(100, 105):
        broker.publish(topic, n)
    settle(broker)
    later = broker.feed(topic, backfill=10)  # the window grows at its top by the five published since
    more = broker.feed(topic, backfill=50)  # and then at its bottom (read afresh)
    try:
        assert drained(first) == list(range(90, 105))  # its history, then what came live
        assert drained(later) == list(range(95, 105))
        assert drained(more) == list(range(55, 105))
        assert broker.hub.history.entries_read - read == 5 + 50
    finally:
        for feed in (first, later, more):
            feed.close()


def test_a_feed_resumed_from_its_position_replays_what_came_after_it(broker):
    topic = unique("t")
    positions = [broker.publish(topic, n) for n in range(60)]
    settle(broker)
    early = broker.feed(topic, backfill=5)  # a window of the newest five
    resumed = broker.feed(topic)
    try:
        resumed._catchup, resumed.position = [], positions[29]
        resumed._resume(broker.hub.position)  # as a session rebuilt from its stored position does
        assert drained(resumed) == list(range(30, 60))  # the window reached down to the position
        assert drained(early) == list(range(55, 60))
        read = broker.hub.history.entries_read
        again = broker.feed(topic)
        again._catchup, again.position = [], positions[39]
        again._resume(broker.hub.position)
        assert drained(again) == list(range(40, 60)) and broker.hub.history.entries_read == read  # a slice
        again.close()
    finally:
        early.close()
        resumed.close()
