"""The registry's contract: slots, caps, expiry order; no HTTP in the way unless the finding was about HTTP."""

from __future__ import annotations

import httpx
import orjson
import pytest

from longpoll import Broker, Expired, SessionLimits, TooManySessions
from longpoll.clients import client_address
from longpoll.errors import Stopping
from longpoll.gate import HoldGate
from longpoll.lifecycle import Lifecycle
from longpoll.registry import Registry
from longpoll.session import Poll as P
from longpoll.testing import Client
from longpoll.waits import THREADS
from tests.conftest_support import polled
from tests.inproc import Process, chat
from tests.procs import ServerProcess
from tests.streams_helpers import Stream, unique


def subscribed(broker: Broker, topic: str):
    with broker.subscribe(topic) as sub:
        while True:
            yield from sub.drain()
            yield sub


def test_a_refused_session_leaves_no_subscription_behind():
    broker = Broker()
    registry = Registry(session_limits=SessionLimits(max_sessions=100, max_per_owner=2))
    topic = unique("refused-")
    built: list[int] = []

    def start():
        built.append(1)
        return subscribed(broker, topic)

    for _ in range(2):
        polled(registry, registry.create(start, owner="me"), P(None, 0, 10))
    for _ in range(20):
        with pytest.raises(TooManySessions):
            registry.create(start, owner="me")
    assert len(built) == 2  # refused before anything was built
    assert broker.hub.subscriptions() == 2
    gen = subscribed(broker, topic)
    next(gen)  # an iterator handed in ready-made is closed when refused
    assert broker.hub.subscriptions() == 3
    with pytest.raises(TooManySessions):
        registry.create(gen, owner="me")
    assert broker.hub.subscriptions() == 2
    registry.close_all()
    assert broker.hub.subscriptions() == 0


def test_a_failed_start_gives_its_slot_back():
    registry = Registry(max_sessions=1)

    def broken():
        raise ValueError("no")

    for _ in range(3):
        with pytest.raises(ValueError):
            registry.create(broken)
    assert len(registry) == 0
    registry.create(iter(range(3)))  # the one slot is still free
    registry.close_all()


def test_sessions_polled_only_with_errors_do_not_stall_expiry(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("longpoll.session.time.monotonic", lambda: now[0])
    registry = Registry(idle_timeout=5, session_limits=SessionLimits(unconfirmed_idle_timeout=5))
    errored = registry.create(iter(range(100)))
    polled(registry, errored, P(None, 0, 1))
    quiet = registry.create(iter(range(100)))
    polled(registry, quiet, P(None, 0, 1))
    now[0] += 4
    for _ in range(3):  # it keeps polling, each time with a cursor the session refuses
        with pytest.raises(Exception, match="cursor"):
            polled(registry, errored, P("99", 0, 1))
    now[0] += 2  # quiet has been idle 6 s, errored 2 s
    assert registry.expire(now[0]) == 1
    assert quiet.closed and not errored.closed
    registry.close_all()


def test_sessions_polled_only_once_give_their_places_up_when_room_is_needed(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("longpoll.session.time.monotonic", lambda: now[0])
    registry = Registry(idle_timeout=60, session_limits=SessionLimits(max_sessions=3, unconfirmed_idle_timeout=2))
    once = registry.create(iter(range(100)))
    polled(registry, once, P(None, 0, 1))
    twice = registry.create(iter(range(100)))
    first = polled(registry, twice, P(None, 0, 1))
    polled(registry, twice, P(first.cursor, 0, 1))
    now[0] += 3
    recent = registry.create(iter(range(100)))
    polled(registry, recent, P(None, 0, 1))
    assert registry.expire() == 0  # nobody needs the room: once's second poll may still be in a queue
    newcomer = registry.create(iter(range(5)))
    assert once.closed and not twice.closed and not recent.closed and not newcomer.closed
    with pytest.raises(TooManySessions):  # recent was polled only just now: it keeps its place
        registry.create(iter(range(5)))
    now[0] += 61
    assert registry.expire() == 3  # past idle_timeout, whether or not they came back
    registry.close_all()


def test_a_full_quota_takes_back_only_its_own_unconfirmed_places(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("longpoll.session.time.monotonic", lambda: now[0])
    registry = Registry(idle_timeout=60, session_limits=SessionLimits(max_per_address=2, unconfirmed_idle_timeout=2))
    mine = [registry.create(iter(range(5)), address="192.0.2.1") for _ in range(2)]
    theirs = registry.create(iter(range(5)), address="198.51.100.1")
    for session in (*mine, theirs):
        polled(registry, session, P(None, 0, 1))
        now[0] += 0.1
    now[0] += 3
    registry.create(iter(range(5)), address="192.0.2.1")
    assert [s.closed for s in mine] == [True, True] and not theirs.closed  # its own, not another's
    registry.close_all()


def test_one_address_cannot_take_every_slot():
    registry = Registry(session_limits=SessionLimits(max_sessions=10, max_per_address=3))
    for _ in range(3):
        registry.create(iter(range(5)), address="192.0.2.1")
    with pytest.raises(TooManySessions, match="address"):
        registry.create(iter(range(5)), address="192.0.2.1")
    for n in range(7):  # everyone else still gets in
        registry.create(iter(range(5)), address=f"198.51.100.{n}")
    with pytest.raises(TooManySessions):
        registry.create(iter(range(5)), address="203.0.113.9")
    registry.close_all()


@pytest.mark.parametrize("peer,forwarded,trusted,client", [
    ("192.0.2.1", "203.0.113.5", (), "192.0.2.1"),  # no proxy trusted: the header is anyone's to forge
    ("10.0.0.2", "203.0.113.5", ("10.0.0.0/8",), "203.0.113.5"),
    ("10.0.0.2", "6.6.6.6, 203.0.113.5", ("10.0.0.0/8",), "203.0.113.5"),  # the left part is the client's own say
    ("10.0.0.2", "203.0.113.5, 10.0.0.9", ("10.0.0.0/8",), "203.0.113.5"),  # two trusted hops
    ("192.0.2.1", "203.0.113.5", ("10.0.0.0/8",), "192.0.2.1"),  # the peer is not a trusted proxy
    ("10.0.0.2", "garbage", ("10.0.0.0/8",), "garbage"),
])
def test_the_client_address_believes_only_trusted_proxies(peer, forwarded, trusted, client):
    assert client_address(peer, forwarded, trusted) == client


def test_many_new_sessions_from_one_address_do_not_lock_out_others():
    with ServerProcess("--max-sessions", "60", "--max-sessions-per-address", "20",
                       "--trust-proxy", "127.0.0.1") as server:
        with httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
            flood = [client.get("/primes", params={"timeout": 0},
                                headers={"X-Forwarded-For": "203.0.113.66"}).status_code for _ in range(40)]
            assert flood.count(200) == 20 and flood.count(429) == 20
            others = [client.get("/primes", params={"timeout": 0},
                                 headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(30)]
            assert others == [200] * 30
            stream = Stream(client, "sample")  # and on every endpoint
            assert stream.poll().status_code == 200


def test_a_session_that_cannot_be_rebuilt_ends_with_410_instead_of_failing_forever(server):
    if server["redis"] is None:
        pytest.skip("needs redis-server")
    prefix = unique("t") + ":"
    one, two = Process(server["redis"].url, prefix, chat), Process(server["redis"].url, prefix, chat)
    try:
        client = Client(one["room"], room="r1")
        client.poll()
        key = prefix + "session:" + client.key
        state = orjson.loads(one.backend.redis.hget(key, "state"))
        state["origin"]["params"]["color"] = "red"  # a parameter this version of the function does not take
        one.backend.redis.hset(key, "state", orjson.dumps(state))
        client.target = two["room"]
        with pytest.raises(Expired, match="could not be resumed"):
            client.poll()
        assert not one.backend.redis.exists(key)  # not loaded, and refused, on every later poll
    finally:
        one.stop()
        two.stop()


def test_a_poll_on_a_copy_closed_as_the_process_stops_says_stopping_never_expired():
    """The engine's stop closes every copy once the HTTP server has stopped.  A stream whose thread first ran
    after that (a loaded server: test_shutdown saw 18 of 100 streams end so under cheroot) was told its
    session expired, and its client would have started over instead of resuming."""
    registry = Registry(gate=HoldGate())  # stopping closes the gate: not the process-wide one other tests wait at
    lifecycle = Lifecycle(registry)
    held = lifecycle.create(lambda: iter(range(5)), ("tests.stopping", None), 65.0, lambda origin: iter, None,
                            "192.0.2.1", None)
    first = THREADS.run(lifecycle.take(held, P(None, 0, 1)))
    registry.stop_holding()
    registry.close_all()
    with pytest.raises(Stopping):
        THREADS.run(lifecycle.take(held, P(first.cursor, 0, 1)))
