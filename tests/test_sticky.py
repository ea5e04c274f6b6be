"""docs/deploying.md's sticky routing, as written: nginx sends each process-local key back to the process its
route names, so no session of a stateful generator meets a process that does not hold it."""

from __future__ import annotations

import httpx
import pytest

from longpoll import keys
from tests.docblocks import block
from tests.nginx import Nginx
from tests.procs import ServerProcess

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

SESSIONS = 30
POLLS = 3
PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]


def sticky_config() -> str:
    """The docs' config, on the test's addresses: its two servers, and a port of its own to listen on."""
    config = block("docs/deploying.md", "sticky-nginx", "nginx")
    for address, placeholder in (("10.0.0.11:8080", "{upstream0}"), ("10.0.0.12:8080", "{upstream1}")):
        assert address in config
        config = config.replace(address, placeholder)
    assert "listen 80;" in config
    return config.replace("listen 80;", "listen 127.0.0.1:{port};")


@pytest.fixture(scope="module")
def named_servers():
    with ServerProcess("--route", "a") as a, ServerProcess("--route", "b") as b:
        yield [a.wait_ready().removeprefix("http://"), b.wait_ready().removeprefix("http://")]


def crowd(url: str) -> tuple[int, set[str], list[list[int]]]:
    """SESSIONS sessions of /primes, POLLS polls each, on fresh connections (so no connection pins a process):
    the 410s, the routes the keys named, and each session's items."""
    expired, routes, items = 0, set(), []
    with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(SESSIONS):
            body = client.get("/primes", params={"limit": 50, "max": 5, "timeout": 0}).json()
            got = list(body["items"])
            routes.add(keys.route_of(body["key"]) or "")
            for _ in range(POLLS - 1):
                answer = client.get("/primes", params={"key": body["key"], "cursor": body["cursor"], "max": 5,
                                                       "timeout": 0})
                if answer.status_code == 410:
                    expired += 1
                    break
                body = answer.json()
                got += body["items"]
            items.append(got)
    return expired, routes, items


def test_the_docs_recipe_routes_every_key_to_the_process_that_made_it(named_servers):
    with Nginx(named_servers, proxy=sticky_config()) as nginx:
        expired, routes, items = crowd(nginx.url)
    assert expired == 0
    assert routes == {"a", "b"}  # first polls went to both processes, round-robin
    assert items == [PRIMES] * SESSIONS


def test_round_robin_without_the_map_loses_sessions_so_the_test_above_can_fail(named_servers):
    with Nginx(named_servers) as nginx:
        expired, _, _ = crowd(nginx.url)
    assert expired > 0


def test_an_event_source_reconnecting_with_last_event_id_reaches_its_process(named_servers):
    with Nginx(named_servers, proxy=sticky_config()) as nginx, \
            httpx.Client(base_url=nginx.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(6):
            last_id, seen = None, []
            for _ in range(POLLS):  # each stream read for one event, then dropped, as a flaky network does
                headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
                with client.stream("GET", "/primes", params={"limit": 50, "max": 5}, headers=headers) as stream:
                    event = read_event(stream)
                assert event.get("event") != "expired", event
                last_id = event["id"]
                seen.append(keys.route_of(last_id.split(".")[0]))
            assert len(set(seen)) == 1 and seen[0] in ("a", "b")


def read_event(stream: httpx.Response) -> dict[str, str]:
    """The first event of an SSE stream that carries data (its fields)."""
    event: dict[str, str] = {}
    for line in stream.iter_lines():
        if not line:
            if "data" in event:
                return event
            event = {}
            continue
        name, _, value = line.partition(":")
        if name:
            event[name] = value.strip()
    raise AssertionError("the stream ended before an event")
