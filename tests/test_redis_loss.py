"""Redis that loses its data (no persistence, kill -9, restart): every durable session carries on, saying gap.

Real redis-server without persistence, two ``longpoll serve --redis`` processes, sessions of every transport
whose polls land on both processes in turn.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest_support import wait_until
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess
from tests.streams_helpers import unique

pytestmark = pytest.mark.slow  # servers and a Redis of their own: not in the quick loop

TRANSPORTS = ("poll", "sse", "ndjson")
ACCEPT = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}


class Follower:
    """One session of ``/topics/<topic>``, continued over one transport, on whichever server it is given."""

    def __init__(self, topic: str, transport: str):
        self.topic = topic
        self.transport = transport
        self.key: str | None = None
        self.cursor: str | None = None
        self.items: list[Any] = []
        self.gaps = 0
        self.statuses: list[int] = []

    def step(self, client: httpx.Client, want: int, timeout: float = 2) -> None:
        """One poll, or one stream read until it has ``want`` items in all (or ``timeout`` passed)."""
        if self.transport == "poll" or self.key is None:
            params: dict[str, Any] = {"timeout": timeout if self.key else 0}
            if self.key:
                params.update(key=self.key, cursor=self.cursor)
            answer = client.get(f"/topics/{self.topic}", params=params)
            self.statuses.append(answer.status_code)
            if answer.status_code == 200:
                self._took(answer.json())
            return
        headers = {"Accept": ACCEPT[self.transport]}
        params = {}
        if self.transport == "sse":
            headers["Last-Event-ID"] = f"{self.key}.{self.cursor}"
        else:
            params = {"key": self.key, "cursor": self.cursor}
        deadline = time.monotonic() + timeout
        try:
            self._stream(client, params, headers, want, timeout, deadline)
        except httpx.ReadTimeout:
            pass  # nothing more came

    def _stream(self, client: httpx.Client, params: dict[str, Any], headers: dict[str, str], want: int,
                timeout: float, deadline: float) -> None:
        with client.stream("GET", f"/topics/{self.topic}", params=params, headers=headers,
                           timeout=httpx.Timeout(10, read=timeout + 5)) as response:
            self.statuses.append(response.status_code)
            if response.status_code != 200:
                return
            for frame in _frames(response.iter_lines(), self.transport == "sse"):
                if frame.get("event") == "expired" or "error" in frame:
                    self.statuses.append(frame.get("status", 410))
                    return
                self._took(frame)
                if len(self.items) >= want or time.monotonic() > deadline:
                    return

    def _took(self, batch: dict[str, Any]) -> None:
        self.key, self.cursor = batch["key"], batch["cursor"]
        self.items += batch.get("items", [])
        self.gaps += bool(batch.get("gap"))


def _frames(lines: Any, sse: bool) -> Any:
    data: dict[str, Any] = {}
    for line in lines:
        if not sse:
            if line.strip():
                yield json.loads(line)
            continue
        if line.startswith("event:"):
            data["event"] = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.update(json.loads(line.partition(":")[2]))
        elif line == "" and data:
            yield data
            data = {}


def _publish(clients: list[httpx.Client], topic: str, item: Any) -> None:
    """Publish once (a 503 while Redis comes back is retried: it stored nothing)."""
    deadline = time.monotonic() + 30
    while True:
        answer = clients[hash(item) % 2].post(f"/topics/{topic}", json=item)
        if answer.status_code == 201:
            return
        assert answer.status_code == 503 and time.monotonic() < deadline, (answer.status_code, answer.text)
        time.sleep(0.2)


def test_redis_that_lost_its_data_is_a_gap_for_every_session_never_a_410():
    redis = RedisProcess(durable=False)
    try:
        with ServerProcess("--redis", redis.url) as one, ServerProcess("--redis", redis.url) as two:
            clients = [httpx.Client(base_url=one.wait_ready(), timeout=30),
                       httpx.Client(base_url=two.wait_ready(), timeout=30)]
            topics = [unique("lost") for _ in range(4)]
            followers = [Follower(topics[i % 4], TRANSPORTS[i % 3]) for i in range(20)]
            for n, follower in enumerate(followers):
                follower.step(clients[n % 2], 0)
            before = {topic: [f"{topic} before {i}" for i in range(3)] for topic in topics}
            for topic, items in before.items():
                for item in items:
                    _publish(clients, topic, item)
            for n, follower in enumerate(followers):  # each on the other server: taken over there
                for turn in range(10):
                    if len(follower.items) >= 3:
                        break
                    follower.step(clients[(n + 1 + turn) % 2], 3)
                assert follower.items == before[follower.topic], (follower.transport, follower.statuses)
                assert follower.gaps == 0

            expected = {topic: list(items) for topic, items in before.items()}
            # Twice: the second loss finds sessions rebuilt in the first, and each process's history of the
            # first new log (test_durable has the interleaving where that history was replayed).
            for loss in ("first", "second"):
                redis.kill()
                redis.start()  # same port, nothing kept
                for client in clients:
                    wait_until(lambda c=client: c.get("/healthz").status_code == 200, timeout=30,
                               what="the hubs to reconnect")
                gaps = {id(follower): follower.gaps for follower in followers}
                for topic, items in expected.items():
                    fresh = [f"{topic} after the {loss} loss {i}" for i in range(3)]
                    for item in fresh:
                        _publish(clients, topic, item)
                    items += fresh
                for n, follower in enumerate(followers):
                    for turn in range(20):
                        if len(follower.items) >= len(expected[follower.topic]):
                            break
                        follower.step(clients[(n + turn) % 2], len(expected[follower.topic]))
                        assert 410 not in follower.statuses, (follower.transport, follower.statuses)
                    assert follower.items == expected[follower.topic], (loss, follower.transport, follower.statuses)
                    assert follower.gaps > gaps[id(follower)], (loss, follower.transport, follower.statuses)
            for client in clients:
                client.close()
    finally:
        redis.stop()
