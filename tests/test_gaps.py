"""Gaps are said, never silent (PROTOCOL.md): a trimmed log under a slow session, Redis losing its data."""

from __future__ import annotations

import httpx

from longpoll.session import Poll as P
from longpoll.session import Session
from longpoll.signals import GAP
from tests.conftest_support import wait_until
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess
from tests.streams_helpers import Stream, post, signup, unique


def status(n: int) -> dict:
    return {"id": 20_000_000 + n, "uid": 1, "login": "g", "message": f"gap {n}", "posted": 0.0}


def test_a_generator_saying_gap_makes_the_next_batch_say_it():
    def gen():
        yield 1
        yield GAP
        yield 2
        yield 3

    session = Session("k", gen())
    first = session.poll(P(None, 0, 10))
    assert (first.items, first.gap) == ([1], False)  # the items before the gap go first, without it
    second = session.poll(P(first.cursor, 0, 10))
    assert (second.items, second.gap) == ([2, 3], True)
    assert session.poll(P(first.cursor, 0, 10)).gap  # sent again, it still says so
    assert second.to_json("k")["gap"] is True and "gap" not in first.to_json("k")


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
