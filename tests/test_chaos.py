"""The attack's integrity shape: overlapping filters, lost answers, two processes, Redis and a server killed.

Ten sessions with overlapping filters take 300 statuses and 30 deletions,
their polls alternating between two ``longpoll serve --redis`` processes,
15% of the answers thrown away (and polled again with the old cursor), while
Redis is SIGKILLed and restarted (AOF on) and one server is SIGKILLed and
restarted.  Each session's expected statuses come from the book's own filter
check of every status that was posted; it must get each once, in order, and
a deletion notice for each deleted one it matched.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from longpoll.server.streams.filters import FilterLimits, parse_filter, parse_sample
from tests.procs import ServerProcess
from tests.streams_helpers import unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

ARGS = ("--max-polls-per-second", "100000", "--max-sessions-per-address", "100000", "--read-timeout", "5")
WORDS = ["alpha", "beta", "gamma", "delta", "redis", "poll"]
PLACES = ["48.85,2.35", "40.71,-74.0", "-33.87,151.21", "35.68,139.69", None, None]


@dataclass
class Session:
    name: str
    kind: str
    params: dict[str, Any]
    max: int
    key: str | None = None
    cursor: str | None = None
    statuses: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    lost: int = 0
    gaps: int = 0

    def matcher(self) -> Any:
        if self.kind == "sample":
            return parse_sample(self.params["identifier"], self.params["percent"])
        return parse_filter(self.params.get("track"), self.params.get("follow"), self.params.get("locations"),
                            FilterLimits())


class Cluster:
    """Two server processes on one Redis; the clients of either, and what comes back."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.servers = [ServerProcess("--redis", redis_url, *ARGS) for _ in range(2)]
        self.clients = [httpx.Client(base_url=s.wait_ready(), timeout=30) for s in self.servers]

    def restart(self, n: int) -> None:
        self.servers[n].kill()
        self.clients[n].close()
        self.servers[n] = ServerProcess("--redis", self.redis_url, *ARGS)
        self.clients[n] = httpx.Client(base_url=self.servers[n].wait_ready(), timeout=30)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers:
            server.stop()

    def request(self, turn: int, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """One request to server turn % 2; None when the server cannot be reached (it is restarting)."""
        try:
            return self.clients[turn % 2].request(method, path, **kwargs)
        except httpx.TransportError:
            return None


def poll(cluster: Cluster, session: Session, turn: int, rng: random.Random) -> None:
    params = {**session.params, "timeout": 0, "max": session.max}
    if session.key:
        params.update(key=session.key, cursor=session.cursor)
    if session.kind == "sample":
        answer = cluster.request(turn, "GET", "/statuses/sample.json", params=params)
    else:
        answer = cluster.request(turn, "POST", "/statuses/filter.json", json=params)
    if answer is None or answer.status_code in (409, 503):
        return  # poll again, with the same cursor
    assert answer.status_code == 200, (session.name, answer.status_code, answer.text,
                                       "".join(cluster.servers[turn % 2].output[-40:]))  # the server's word on it
    if session.key and rng.random() < 0.15:
        session.lost += 1  # the answer never arrived: the next poll sends the old cursor
        return
    body = answer.json()
    session.gaps += bool(body.get("gap"))
    session.key, session.cursor = body["key"], body["cursor"]
    for item in body["items"]:
        (session.deleted if item.get("deleted") else session.statuses).append(item["id"])


def test_nothing_lost_or_repeated_through_faults(durable_redis):
    rng = random.Random(20261123)
    tag = unique("c")
    sessions = [
        Session("sample 100%", "sample", {"identifier": f"{tag}a", "percent": 100}, 7),
        Session("sample 30%", "sample", {"identifier": f"{tag}b", "percent": 30}, 3),
        Session("track alpha", "filter", {"identifier": f"{tag}c", "track": "alpha"}, 1),
        Session("track two words", "filter", {"identifier": f"{tag}d", "track": "beta gamma,redis"}, 9),
        Session("follow", "filter", {"identifier": f"{tag}e", "follow": f"{tag}u0,{tag}u2"}, 4),
        Session("europe", "filter", {"identifier": f"{tag}f", "locations": "-10,35,30,60"}, 2),
        Session("americas", "filter", {"identifier": f"{tag}g", "locations": "-130,-50,-30,60"}, 5),
        Session("combined", "filter", {"identifier": f"{tag}h", "track": "delta", "locations": "100,-45,160,40"}, 6),
        Session("sample 50%", "sample", {"identifier": f"{tag}i", "percent": 50}, 8),
        Session("follow one", "filter", {"identifier": f"{tag}j", "follow": f"{tag}u1"}, 1),
    ]
    cluster = Cluster(durable_redis.url)
    try:
        tokens = []
        for n in range(3):
            made = cluster.request(n, "POST", "/users", data={"login": f"{tag}u{n}"})
            assert made is not None and made.status_code == 201
            tokens.append(made.json()["token"])
        turn = 0
        for session in sessions:
            while session.key is None:
                poll(cluster, session, turn, rng)
                turn += 1
        posted: list[dict[str, Any]] = []
        deleted: list[int] = []

        def post_some(count: int) -> None:
            nonlocal turn
            for _ in range(count):
                author = rng.randrange(3)
                words = rng.sample(WORDS, 2) + ([f"@{tag}u{rng.randrange(3)}"] if rng.random() < 0.2 else [])
                data = {"message": " ".join(words)}
                if (place := rng.choice(PLACES)) is not None:
                    data["location"] = place
                while True:
                    turn += 1
                    answer = cluster.request(turn, "POST", "/statuses", data=data,
                                             headers={"Authorization": f"Bearer {tokens[author]}"})
                    if answer is not None and answer.status_code == 201:
                        posted.append({**answer.json(), "author": author})
                        break
                    assert answer is None or answer.status_code == 503, answer.text
                    time.sleep(0.05)
                if rng.random() < 0.25:
                    poll(cluster, rng.choice(sessions), turn, rng)

        def delete_some(count: int) -> None:
            nonlocal turn
            for status in rng.sample([s for s in posted if s["id"] not in deleted], count):
                while True:
                    turn += 1
                    answer = cluster.request(turn, "DELETE", f"/statuses/{status['id']}",
                                             headers={"Authorization": f"Bearer {tokens[status['author']]}"})
                    if answer is not None and answer.status_code == 200:
                        deleted.append(status["id"])
                        break
                    assert answer is None or answer.status_code == 503, answer.text
                    time.sleep(0.05)

        post_some(100)
        delete_some(10)
        durable_redis.kill()  # Redis goes: posts and polls answer 503 meanwhile
        for session in sessions:
            poll(cluster, session, turn, rng)
        durable_redis.start()
        post_some(100)
        delete_some(10)
        cluster.restart(1)  # a server is killed mid-stream and comes back
        post_some(100)
        delete_some(10)

        expected = {s.name: [p["id"] for p in posted if s.matcher().check(p)] for s in sessions}
        expected_deleted = {s.name: [i for i in deleted if i in set(expected[s.name])] for s in sessions}
        deadline = time.monotonic() + 60
        while any(len(s.statuses) < len(expected[s.name]) or len(s.deleted) < len(expected_deleted[s.name])
                  for s in sessions) and time.monotonic() < deadline:
            for session in sessions:
                turn += 1
                poll(cluster, session, turn, rng)
        for session in sessions:  # and nothing more turns up
            turn += 1
            poll(cluster, session, turn, rng)
    finally:
        cluster.close()

    print()
    for session in sessions:
        want, got = expected[session.name], session.statuses
        lost, duplicated = len(set(want) - set(got)), len(got) - len(set(got))
        print(f"{session.name:>16}: expected {len(want):3} statuses, got {len(got):3}, lost {lost}, "
              f"duplicated {duplicated}; deletions {len(session.deleted)}/{len(expected_deleted[session.name])}; "
              f"{session.lost} answers thrown away")
    for session in sessions:
        assert session.statuses == expected[session.name], session.name
        assert not session.gaps, session.name  # Redis keeps everything (AOF, fsync always): nothing to say
        assert sorted(session.deleted) == sorted(expected_deleted[session.name]), session.name
