"""Behind a real nginx, round-robin over two ``longpoll serve --redis`` processes, no sticky sessions:
long-polls and SSE streams with overlapping filters each get every matching status once, in order."""

from __future__ import annotations

import httpx
import pytest

from tests.nginx import Nginx
from tests.procs import ServerProcess
from tests.streams_helpers import Stream, post, signup, unique
from tests.test_transports import SSE, Reader

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


def test_polls_and_streams_through_nginx_to_two_servers(durable_redis):
    args = ("--redis", durable_redis.url, "--trust-proxy", "127.0.0.1")
    with ServerProcess(*args) as one, ServerProcess(*args) as two:
        upstreams = [url.split("//")[1] for url in (one.wait_ready(), two.wait_ready())]
        with Nginx(upstreams) as nginx, httpx.Client(base_url=nginx.url, timeout=30) as client:
            word = unique("proxied")
            polls = [Stream(client, "sample", percent=100), Stream(client, "filter", track=word),
                     Stream(client, "filter", track=f"{word} odd")]
            streams = [Reader(client, "GET", "/statuses/filter.json", SSE,
                              params={"identifier": unique("sse"), "track": track})
                       for track in (word, f"odd {word}")]
            for reader in streams:
                reader.wait_for(lambda r: r.frames)  # subscribed: its first event carries its key
            total = 40
            _, token = signup(client)
            posted = [post(client, token, f"{word} {'odd' if n % 2 else 'even'} {n}")["id"] for n in range(total)]
            odd = [status for n, status in enumerate(posted) if n % 2]
            assert polls[0].collect(total) == posted  # each poll may reach either server: nginx alternates
            assert polls[1].collect(total) == posted
            assert polls[2].collect(total // 2) == odd
            streams[0].wait_for(lambda r: [i["id"] for i in r.items()] == posted, timeout=30)
            streams[1].wait_for(lambda r: [i["id"] for i in r.items()] == odd, timeout=30)
            polled = [httpx.get(f"http://{upstream}/stats", timeout=10).json()["polls"] for upstream in upstreams]
            assert all(count > 0 for count in polled), polled  # both servers answered polls: no stickiness
