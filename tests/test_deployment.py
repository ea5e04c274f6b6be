"""The deployment users run: two processes on Redis behind a round-robin nginx, one session taken over
every transport in turn, a process restarted in the middle: every item once, in order, never a 410.

For an app of the README's shape (``tests/embedding/feeds.py``, its feed durable as written) and for
``longpoll serve``'s status streams: the same mechanism carries both.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable

import httpx
import pytest

from tests.conftest_support import free_port
from tests.mixed import MixedClient
from tests.nginx import Nginx
from tests.procs import ROOT, ServerProcess
from tests.streams_helpers import signup, unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

FEEDS_APP = ROOT / "tests" / "embedding" / "feeds.py"


class Pair:
    """Two processes on fixed ports (a restarted one comes back where nginx looks for it)."""

    def __init__(self, start: Callable[[int], ServerProcess]):
        self.start = start
        self.ports = [free_port(), free_port()]
        self.procs = [start(port) for port in self.ports]
        self.urls = [proc.wait_ready().rstrip("/") + "/" for proc in self.procs]

    def restart(self, n: int) -> None:
        assert self.procs[n].stop() is not None
        self.procs[n] = self.start(self.ports[n])
        self.procs[n].wait_ready()

    def upstreams(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()


def run(mixed: MixedClient, publish: Callable[[int, int], None], pair: Pair, total: int) -> None:
    """Publish ``total`` items (to either process, the one up), the client taking turns meanwhile; one
    process restarted halfway; then the client takes the rest."""
    for n in range(total):
        publish(n, n % 2)
        if n == total // 2:
            pair.restart(0)
        if n % 3 == 0:
            mixed.step(timeout=0.5)
    for _ in range(200):
        if len(mixed.items) >= total:
            break
        mixed.step(timeout=1)


def test_an_apps_feed_on_two_processes_through_nginx_with_a_restart(durable_redis):
    pair = Pair(lambda port: ServerProcess(command=[sys.executable, str(FEEDS_APP), str(port), durable_redis.url]))
    try:
        with Nginx(pair.upstreams()) as nginx, httpx.Client(base_url=nginx.url, timeout=30) as client:
            mixed = MixedClient(client, "/news", {}, random.Random(19))
            mixed.step(timeout=0)

            def publish(n: int, where: int) -> None:
                for url in (pair.urls[where], pair.urls[1 - where]):
                    try:
                        if httpx.post(url + "publish", json=n, timeout=10).status_code == 200:
                            return
                    except httpx.TransportError:
                        continue  # that one is restarting
                raise AssertionError(f"nobody took item {n}")

            run(mixed, publish, pair, 150)
            assert mixed.items == list(range(150)), (len(mixed.items), mixed.statuses)
            assert 410 not in mixed.statuses and mixed.used == {"poll", "sse", "ndjson"}
            assert not mixed.gaps
    finally:
        pair.close()


def test_a_status_stream_on_two_serve_processes_through_nginx_with_a_restart(durable_redis):
    args = ("--redis", durable_redis.url, "--max-polls-per-second", "1000")
    pair = Pair(lambda port: ServerProcess(*args, "--port", str(port)))
    try:
        with Nginx(pair.upstreams()) as nginx, httpx.Client(base_url=nginx.url, timeout=30) as client:
            word = unique("mixed")
            mixed = MixedClient(client, "/statuses/filter.json", {"track": word}, random.Random(20),
                                always={"identifier": unique("m")})
            mixed.step(timeout=0)
            tokens = [signup(httpx.Client(base_url=url, timeout=30))[1] for url in pair.urls]
            posted: list[int] = []

            def publish(n: int, where: int) -> None:
                for side in (where, 1 - where):
                    try:
                        answer = httpx.post(pair.urls[side] + "statuses", data={"message": f"{word} {n}"},
                                            headers={"Authorization": f"Bearer {tokens[side]}"}, timeout=10)
                    except httpx.TransportError:
                        continue
                    if answer.status_code == 201:
                        posted.append(answer.json()["id"])
                        return
                raise AssertionError(f"nobody took status {n}")

            run(mixed, publish, pair, 120)
            assert [item["id"] for item in mixed.items] == posted, (len(mixed.items), mixed.statuses)
            assert 410 not in mixed.statuses and mixed.used == {"poll", "sse", "ndjson"}
    finally:
        pair.close()
