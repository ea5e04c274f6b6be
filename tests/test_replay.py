"""Sessions of a generator that is a pure function of its parameters (``json_yield(replay=True)``): any
process continues them by calling it again and skipping what the client has."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import longpoll
from longpoll.testing import Client
from tests.inproc import Process
from tests.procs import ServerProcess
from tests.streams_helpers import unique


def squares_app(broker: longpoll.Broker) -> dict[str, Any]:
    @longpoll.json_yield(name="tests.squares", replay=True)
    def squares(limit: str = "50") -> Iterator[int]:
        return (n * n for n in range(int(limit)))

    @longpoll.json_yield(name="tests.cubes", replay=True)
    def cubes(limit: str = "50") -> Iterator[int]:
        return (n ** 3 for n in range(int(limit)))

    return {"squares": squares, "cubes": cubes}


@pytest.fixture
def pair(server) -> Iterator[tuple[Process, Process]]:
    if server["redis"] is None:
        pytest.skip("needs redis-server")
    prefix = unique("r") + ":"
    one, two = Process(server["redis"].url, prefix, squares_app), Process(server["redis"].url, prefix, squares_app)
    yield one, two
    one.stop()
    two.stop()


def test_a_replayed_session_goes_on_in_any_process_losing_and_repeating_nothing(pair):
    one, two = pair
    client = Client(one["squares"], limit="40")
    client.poll(max=7)
    assert client.key.startswith("R")
    for turn in range(12):
        client.target = pair[turn % 2]["squares"]
        body = client.poll(max=3 + turn % 4)
        if body["state"] == "done":
            break
    assert client.items == [n * n for n in range(40)]


def test_a_cursor_asked_again_on_another_process_gets_the_same_batch(pair):
    one, two = pair
    client = Client(one["squares"], limit="40")
    client.poll(max=5)
    key, cursor = client.key, client.cursor
    first = client.poll(max=5)
    again = Client(two["squares"])
    again.key, again.cursor = key, cursor
    assert again.poll(max=5)["items"] == first["items"] == [n * n for n in range(5, 10)]


def test_a_replayed_key_opens_nothing_it_was_not_made_for(pair):
    one, two = pair
    client = Client(one["squares"], limit="40")
    client.poll(max=5)
    client.poll(max=5)

    def status(name: str, key: str, cursor: str) -> int:
        other = Client(two[name])
        return other._send({"key": key, "cursor": cursor, "timeout": 0})[0]

    forged = client.key[:30] + ("A" if client.key[30] != "A" else "B") + client.key[31:]
    assert status("squares", forged, client.cursor) == 410
    assert status("cubes", client.key, client.cursor) == 410  # another endpoint's
    seq, items, mac = client.cursor.split(".")
    assert status("squares", client.key, f"{seq}.{int(items) + 5}.{mac}") == 400  # more than it sent
    assert status("squares", client.key, client.cursor) == 200


@pytest.mark.slow
def test_primes_on_two_workers_needs_no_sticky_routing():
    """``longpoll serve --workers 2``: continuation polls of /primes on the worker that did not make the session
    answered 410 (11 of 20)."""
    from tests.redisproc import RedisProcess

    redis = RedisProcess()
    try:
        with ServerProcess("--workers", "2", "--redis", redis.url) as server:
            url = server.wait_ready()
            limits = httpx.Limits(max_keepalive_connections=0)  # a new connection each poll: both workers answer
            with httpx.Client(base_url=url, timeout=30, limits=limits) as client:
                statuses: list[int] = []
                for n in range(20):
                    got: list[int] = []
                    params: dict[str, Any] = {"limit": 200 + n, "max": 10, "timeout": 0}
                    for _ in range(60):
                        answer = client.get("/primes", params=params)
                        statuses.append(answer.status_code)
                        assert answer.status_code == 200, answer.text
                        body = answer.json()
                        got += body["items"]
                        if body["state"] == "done":
                            break
                        params = {"key": body["key"], "cursor": body["cursor"], "max": 10, "timeout": 0}
                    assert got == [p for p in range(2, 201 + n) if all(p % d for d in range(2, int(p ** 0.5) + 1))]
                assert statuses.count(410) == 0
    finally:
        redis.stop()


@pytest.mark.slow
def test_processes_without_a_session_store_replay_with_the_secret_they_are_given():
    """No Redis: the processes share no memory, so a replayed key is sealed with ``$LONGPOLL_SECRET``; without
    one, /primes stays process-local (test_sticky.py routes those)."""
    env = {"LONGPOLL_SECRET": "a secret the two processes share"}
    with ServerProcess(env=env) as a, ServerProcess(env=env) as b, \
            httpx.Client(timeout=30) as client:
        urls = [a.wait_ready().rstrip("/"), b.wait_ready().rstrip("/")]
        body = client.get(urls[0] + "/primes", params={"limit": 60, "max": 4, "timeout": 0}).json()
        assert body["key"].startswith("R")
        got = list(body["items"])
        for turn in range(1, 30):
            answer = client.get(urls[turn % 2] + "/primes", params={"key": body["key"], "cursor": body["cursor"],
                                                                    "max": 4, "timeout": 0})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            got += body["items"]
            if body["state"] == "done":
                break
        assert got == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
