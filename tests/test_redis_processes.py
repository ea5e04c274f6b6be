"""The Redis backend across processes and outages: real redis-server, real server processes."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.conftest_support import wait_until
from tests.procs import ServerProcess
from tests.streams_helpers import Stream, post, signup, unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


def test_two_server_processes_on_one_redis_each_deliver_every_status(durable_redis):
    with ServerProcess("--redis", durable_redis.url) as one, ServerProcess("--redis", durable_redis.url) as two:
        with httpx.Client(base_url=one.wait_ready(), timeout=30) as a, \
                httpx.Client(base_url=two.wait_ready(), timeout=30) as b:
            streams = [Stream(a, "sample", percent=100), Stream(b, "sample", percent=100),
                       Stream(b, "filter", track="shared")]
            _, token = signup(a)
            posted = [post(a if i % 2 else b, token, f"shared status {i}")["id"] for i in range(30)]
            for stream in streams:
                assert stream.collect(30) == posted


def test_redis_killed_and_restarted_mid_stream_loses_and_repeats_nothing(durable_redis):
    with ServerProcess("--redis", durable_redis.url) as server:
        with httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
            stream = Stream(client, "sample", identifier=unique("outage"), percent=100)
            _, token = signup(client)
            posted = [post(client, token, f"before {i}")["id"] for i in range(5)]
            assert stream.collect(5) == posted

            durable_redis.kill()
            refused = client.post("/statuses", data={"message": "during"},
                                  headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"] == "backend_unavailable"
            wait_until(lambda: client.get("/healthz").status_code == 503, timeout=15, what="healthz to report it")
            polled = stream.poll(timeout=1)
            assert polled.status_code == 503 and polled.json()["error"] == "backend_unavailable"

            durable_redis.start()  # same port, same append-only file
            wait_until(lambda: client.get("/healthz").status_code == 200, timeout=30, what="the hub to reconnect")
            posted += [post(client, token, f"after {i}")["id"] for i in range(5)]
            assert stream.collect(10) == posted
            stream.poll(timeout=0.5)
            assert stream.ids() == posted  # and nothing more turned up


def test_raw_publish_on_the_seed_channel_reaches_sessions(client, broker, backend, server):
    if backend != "redis":
        pytest.skip("PUBLISH is the Redis backend's compatibility path")
    stream = Stream(client, "filter", track="seeded")  # the hub runs from its first subscriber on, the bridge with it
    assert server["roots"]["redis"].statuses.store.bridge.subscribed.wait(10)
    status = {"id": 990001, "uid": 1, "login": "seed", "message": "seeded from redis-cli", "posted": 1.5}
    before = broker.hub.malformed
    broker.redis.publish("streaming:status:", b"not json at all")
    broker.redis.publish("streaming:status:", orjson.dumps(status))
    broker.redis.publish("streaming:status:", orjson.dumps({**status, "deleted": True}))
    deadline = time.monotonic() + 15
    while len(stream.items) < 2:
        assert time.monotonic() < deadline, stream.items
        stream.poll(timeout=2)
    assert stream.items == [status, {"id": 990001, "deleted": True}]
    assert broker.hub.malformed == before + 1
