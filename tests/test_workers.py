"""`longpoll serve --workers N`: granian's worker processes, each with its event loop, sharing sessions
through Redis; held polls are futures, not threads."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from tests.procs import ServerProcess
from tests.streams_helpers import Stream, post, signup, unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


def test_two_workers_serve_one_stream_without_loss(durable_redis):
    with ServerProcess("--workers", "2", "--redis", durable_redis.url) as server:
        url = server.wait_ready()
        assert "granian, 2 workers" in "".join(server.output)
        # Fresh connections each time, so the kernel spreads polls over both workers.
        with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            _, token = signup(c)
            word = unique("g")
            streams = [Stream(c, "sample", percent=100), Stream(c, "filter", track=word)]
            published = [post(c, token, f"{word} {i}")["id"] for i in range(20)]
            for stream in streams:
                assert stream.collect(20, timeout=60, poll_timeout=1) == published


def test_a_worker_holds_many_polls_and_still_answers_a_ready_one():
    with ServerProcess("--workers", "1", "--max-sessions-per-address", "5000") as server:
        url = server.wait_ready()
        n = 1000  # more than the default threaded server lets wait (900)

        async def crowd() -> tuple[list[int], int]:
            limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
            async with httpx.AsyncClient(base_url=url, timeout=90, limits=limits) as ac:
                topic = "/topics/" + unique("crowd")
                polls = [asyncio.create_task(ac.get(topic, params={"timeout": 60})) for _ in range(n)]
                deadline = time.monotonic() + 60
                while (await ac.get("/stats")).json()["held_polls"] < n:
                    assert time.monotonic() < deadline, "the polls were not all held"
                    await asyncio.sleep(0.2)
                ready = await ac.get("/primes", params={"limit": 20, "timeout": 0}, timeout=10)
                assert ready.status_code == 200 and ready.json()["items"][:2] == [2, 3]
                assert (await ac.post(topic, json="release")).status_code == 201
                answers = await asyncio.gather(*polls)
                return [r.status_code for r in answers], sum(r.json()["items"] == ["release"] for r in answers)

        codes, released = asyncio.run(crowd())
        assert codes == [200] * n and released == n


def test_every_answer_carries_a_current_date_and_continuation_polls_parse_as_cherrypy_would():
    """The loop's path splits plain query strings itself: it must still say what parse_qsl would; and the
    server dates its answers."""
    with ServerProcess("--workers", "1") as server:
        url = server.wait_ready()
        with httpx.Client(base_url=url, timeout=10) as client:
            first = client.get("/primes", params={"limit": 50, "max": 2, "timeout": 0})
            body = first.json()
            # a plain query string (the fast path's own split) and an escaped one (parse_qsl) agree
            plain = client.get(f"/primes?limit=50&max=2&timeout=0&key={body['key']}&cursor={body['cursor']}")
            cursor = plain.json()["cursor"]
            escaped = client.get(f"/primes?limit=50&max=%31&timeout=0&key={body['key']}&cursor={cursor}&&")
            for answer in (first, plain):
                stamp = email.utils.parsedate_to_datetime(answer.headers["Date"])
                assert abs(stamp.timestamp() - time.time()) < 5
    assert plain.status_code == 200 and plain.json()["items"] == [5, 7]
    assert escaped.status_code == 200 and escaped.json()["items"] == [11]
