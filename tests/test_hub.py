"""The hub's bookkeeping and its readers: nothing kept for good, nothing read half-way."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import redis

from longpoll import BackendUnavailable, Broker
from longpoll.backends.channel import ChannelListener
from longpoll.hub import Hub
from tests.conftest_support import wait_until
from tests.streams_helpers import unique


def test_topics_nobody_reads_leave_nothing_behind(server):
    broker = Broker()
    before = broker.hub.topics()
    for n in range(1000):  # anyone can make topics: GET /topics/<name>
        broker.subscribe(f"made-up-{n}").close()
    assert broker.hub.topics() == before
    kept = broker.subscribe("kept")
    broker.subscribe("kept").close()
    assert broker.hub.topics() == before + 1 and broker.hub.subscriptions() == 1
    kept.close()


def test_counting_subscriptions_while_topics_come_and_go(server):
    broker = Broker()
    stop = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        n = 0
        while not stop.is_set():
            broker.subscribe(f"churn-{n % 50}").close()
            n += 1

    def count() -> None:
        try:
            for _ in range(20_000):
                broker.hub.subscriptions()
                broker.hub.stats()
        except BaseException as exc:  # RuntimeError: dictionary changed size during iteration
            failures.append(exc)

    churner = threading.Thread(target=churn)
    churner.start()
    counter = threading.Thread(target=count)
    counter.start()
    counter.join(60)
    stop.set()
    churner.join(10)
    assert not failures, failures


def test_a_dropped_broker_takes_its_hub_and_reader_with_it(server):
    broker = Broker()
    broker.subscribe("x").close()  # the hub reads from now on
    hub = weakref.ref(broker.hub)
    thread = broker.hub._reader._thread
    assert thread is not None and thread.is_alive()
    del broker
    gc.collect()
    wait_until(lambda: hub() is None and not thread.is_alive(), timeout=10, what="the hub and its thread to go")


class GatedLock:
    """The hub's lock, except that one thread's next acquire waits for a gate to open."""

    def __init__(self, held_back: threading.Thread, gate: threading.Event):
        self._lock = threading.Lock()
        self.held_back = held_back
        self.gate = gate

    def __enter__(self) -> GatedLock:
        if threading.current_thread() is self.held_back:
            self.held_back = None
            self.gate.wait(10)
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_subscription_made_as_the_backend_recovers_does_not_keep_the_old_error(server):
    """The race: subscribe reads the hub's error, the hub recovers and clears every subscription's
    error, and only then is the new subscription added, keeping the outage's error for good."""
    hub = Broker().hub
    hub._fail(BackendUnavailable())  # an outage
    gate = threading.Event()
    made: dict = {}
    subscriber = threading.Thread(target=lambda: made.setdefault("sub", hub.subscribe("recovering")))
    hub._lock = GatedLock(subscriber, gate)
    subscriber.start()
    wait_until(lambda: hub._lock.held_back is None, what="subscribe to reach the hub's lock")
    hub._fail(None)  # the backend is back, while subscribe waits
    gate.set()
    subscriber.join(10)
    assert made["sub"].error is None
    made["sub"].close()


def test_a_channel_handler_that_raises_does_not_end_the_listener(server):
    if "redis" not in server["brokers"]:
        pytest.skip("needs redis-server")
    client: redis.Redis = server["brokers"]["redis"].redis
    channel = unique("channel-")
    seen: list[bytes] = []
    arrived = threading.Event()

    def handle(data: bytes) -> None:
        if data == b"bad":
            raise ValueError("a message the handler cannot take")
        seen.append(data)
        arrived.set()

    listener = ChannelListener(client, channel, handle)
    listener.start()
    try:
        assert listener.subscribed.wait(10)
        client.publish(channel, b"bad")
        client.publish(channel, b"good")
        assert arrived.wait(10) and seen == [b"good"]
    finally:
        listener.stop()


def test_hub_constructors_touch_no_engine(server):
    import cherrypy

    before = {channel: set(listeners) for channel, listeners in cherrypy.engine.listeners.items()}
    Hub(Broker().log)
    after = {channel: set(listeners) for channel, listeners in cherrypy.engine.listeners.items()}
    assert after == before
