"""Session, registry and hub rules without HTTP in the way."""

from __future__ import annotations

import threading

import pytest

from longpoll import BackendUnavailable, BadParameter, Expired, Signal
from longpoll.gate import HoldGate
from longpoll.registry import Registry
from longpoll.session import Poll as P
from longpoll.session import Session
from tests.conftest_support import polled


def counting(n: int):
    yield from range(n)


def test_previous_cursor_resends_newest_acknowledges():
    s = Session("k", counting(10))
    one = s.poll(P(None, 0, 3))
    two = s.poll(P(one.cursor, 0, 3))
    assert s.poll(P(one.cursor, 0, 3)).items == two.items == [3, 4, 5]
    three = s.poll(P(two.cursor, 0, 3))
    assert three.items == [6, 7, 8]
    with pytest.raises(BadParameter):
        s.poll(P(one.cursor, 0, 3))  # two batches back: refused, not guessed at


def test_done_then_acknowledged_is_expired():
    s = Session("k", counting(2))
    last = s.poll(P(None, 0, 10))
    assert (last.state, last.items) == ("done", [0, 1])
    with pytest.raises(Expired):
        s.poll(P(last.cursor, 0, 10))
    assert s.closed


def test_a_signal_parks_the_poll_until_notified():
    signal = Signal()
    box: list = []

    def gen():
        while True:
            while box:
                yield box.pop(0)
            yield signal

    s = Session("k", gen())
    first = s.poll(P(None, 0, 10))
    assert first.items == []
    answered = threading.Event()
    result: dict = {}

    def poll():
        result["batch"] = s.poll(P(first.cursor, 30, 10))
        answered.set()

    threading.Thread(target=poll).start()
    assert not answered.wait(0.2)  # parked: nothing is ready
    box.append("news")
    signal.notify()
    assert answered.wait(10)
    assert result["batch"].items == ["news"]


def test_a_signal_error_answers_that_error_and_keeps_the_session():
    signal = Signal()
    box = ["before"]

    def gen():
        while True:
            while box:
                yield box.pop(0)
            yield signal

    s = Session("k", gen())
    signal.fail(BackendUnavailable())
    assert s.poll(P(None, 10, 10)).items == ["before"]  # buffered items are still served
    with pytest.raises(BackendUnavailable):
        s.poll(P("1", 10, 10))
    signal.fail(None)
    box.append("after")
    assert s.poll(P("1", 0, 10)).items == ["after"]
    assert not s.closed


def test_a_generator_making_a_new_signal_per_wait_does_not_spin():
    s = Session("k", iter(Signal, None))
    assert s.poll(P(None, 0.05, 10)).items == []
    for _ in range(20):
        s.poll(P("0", 0, 10))
    assert len(s._watched) <= 8


def test_gate_full_answers_at_once_with_retry_ms():
    signal = Signal()
    s = Session("k", iter(lambda: signal, None))
    gate = HoldGate(limit=0)
    batch = s.poll(P(None, 30, 10, gate=gate))
    assert batch.items == [] and batch.retry_ms and gate.held == 0


def test_close_runs_the_generators_finally_once():
    ran: list = []

    def gen():
        try:
            yield from range(100)
        finally:
            ran.append(1)

    s = Session("k", gen())
    s.poll(P(None, 0, 1))
    s.close()
    s.close()
    assert ran == [1]
    with pytest.raises(Expired):
        s.poll(P("1", 0, 1))


def test_a_parameter_error_raised_by_the_generator_ends_the_session_with_that_error():
    def gen():
        raise BadParameter("limit", "bad")
        yield

    s = Session("k", gen())
    with pytest.raises(BadParameter):
        s.poll(P(None, 0, 1))
    assert s.closed


def test_registry_expires_only_idle_sessions_and_counts_them():
    registry = Registry(idle_timeout=5)
    closed: list = []

    def gen(name):
        try:
            yield from range(10)
        finally:
            closed.append(name)

    a = registry.create(gen("a"))
    b = registry.create(gen("b"))
    polled(registry, a, P(None, 0, 1))
    polled(registry, b, P(None, 0, 1))
    now = b.last_seen
    assert registry.expire(now + 1) == 0
    assert registry.expire(now + 6) == 2
    assert sorted(closed) == ["a", "b"] and len(registry) == 0
    assert registry.stats()["sessions_expired"] == 2
    assert registry.get(a.key) is None


def test_keys_are_long_and_unique():
    registry = Registry(max_sessions=2000)
    keys = {registry.create(counting(1)).key for _ in range(1000)}
    assert len(keys) == 1000
    assert min(len(k) for k in keys) >= 22  # at least 128 bits in URL-safe base64
    registry.close_all()


def test_poll_rate_is_a_token_bucket(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("longpoll.session.time.monotonic", lambda: now[0])
    s = Session("k", counting(10))
    assert [s.admit(rate=2, burst=3) for _ in range(3)] == [0, 0, 0]  # a burst of 3
    assert s.admit(rate=2, burst=3) == pytest.approx(0.5)  # then one every 1/rate seconds
    now[0] += 0.5
    assert s.admit(rate=2, burst=3) == 0
    now[0] += 100
    assert [s.admit(rate=2, burst=3) for _ in range(4)][-1] > 0  # idle time refills at most the burst


def test_a_stream_goes_on_with_its_ticket_and_yields_to_a_poll_that_began_between_its_polls():
    """A stream is a loop of polls: if each took a new ticket, a poll arriving between two of them would
    be released by the stream's next one, and the stream would win over the newer client."""
    s = Session("k", counting(100))
    first = s.poll(P("0", 0, 1))
    assert first.items == [0] and first.ticket
    going_on = s.poll(P(first.cursor, 0, 1, keep=True, follow=first.ticket))
    assert going_on.items == [1] and going_on.ticket == first.ticket and not going_on.released
    newer = s.poll(P(going_on.cursor, 0, 1))  # another connection's poll, between two of the stream's
    assert newer.items == [2] and newer.ticket > first.ticket
    late = s.poll(P(newer.cursor, 0, 1, keep=True, follow=going_on.ticket))
    assert late.released and late.items == []  # the stream ends; the newer poll's session goes on
    assert s.poll(P(newer.cursor, 0, 1)).items == [3]


def test_what_a_session_keeps_is_bounded_in_bytes_too():
    big = "x" * 100_000
    s = Session("k", iter([big] * 100))
    batch = s.poll(P(None, 0, 1000, max_bytes=256 * 1024))
    assert batch.count == 3 and len(batch.raw) < 256 * 1024 + 100_010  # ends once past the bound, never empty
    one = s.poll(P(batch.cursor, 0, 1000, max_bytes=10))
    assert one.count == 1  # an item larger than the bound still goes, alone
    cursor = one.cursor
    for _ in range(30):  # a stream sends on without acknowledgements: it keeps at most a MiB
        cursor = s.poll(P(cursor, 0, 1000, max_bytes=256 * 1024, keep=True)).cursor
    from longpoll.session import MAX_UNACKNOWLEDGED_BYTES

    kept = sum(sent.size for sent in s._sent)
    assert kept <= MAX_UNACKNOWLEDGED_BYTES + 256 * 1024 and len(s._sent) > 1


def test_a_poll_at_once_is_the_same_poll_with_no_wait():
    """Poll.at_once names every field (it is on every poll's path, where dataclasses.replace costs several
    times as much): a field added to Poll and not to it would be lost here."""
    import dataclasses

    from longpoll.gate import HoldGate
    from longpoll.session import Poll

    poll = Poll("7", 30.0, 5, lambda v: b"1", HoldGate(), True, True, 3, lambda: None, 99)
    now = poll.at_once()
    assert now.timeout == 0.0
    assert all(getattr(now, f.name) is getattr(poll, f.name) for f in dataclasses.fields(Poll) if f.name != "timeout")
