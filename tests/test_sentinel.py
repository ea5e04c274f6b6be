"""Redis behind Sentinel: the primary dies, a replica takes over, and the stream goes on.

A real primary, a real replica and a real sentinel (redis-server --sentinel),
all started here on free ports; the server is a real ``longpoll serve`` given
only the sentinel's address.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import httpx
import pytest
import redis

from longpoll.backends.sentinel import parse
from tests.conftest_support import free_port, wait_until
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess, require_redis_server
from tests.streams_helpers import Stream, signup, unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

SERVICE = "lp"


class SentinelProcess:
    def __init__(self, primary_port: int):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="longpoll-sentinel-")
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:  # sentinel rewrites its config: it must be a file of its own
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
                    f"sentinel down-after-milliseconds {SERVICE} 500\n"
                    f"sentinel failover-timeout {SERVICE} 5000\n")
        self.proc = subprocess.Popen([require_redis_server(), conf, "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)
        wait_until(self._knows_primary, timeout=15, what="the sentinel to start")

    def _knows_primary(self) -> bool:
        try:
            return self.client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE) is not None
        except redis.ConnectionError:
            return False

    def primary_port(self) -> int:
        return int(self.client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)[1])

    def stop(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def sentinel_setup():
    primary = RedisProcess()
    replica = RedisProcess(args=("--replicaof", "127.0.0.1", str(primary.port)))
    sentinel = None
    try:
        wait_until(lambda: redis.Redis(port=replica.port).info("replication")["master_link_status"] == "up",
                   timeout=15, what="the replica to sync")
        sentinel = SentinelProcess(primary.port)
        yield primary, replica, sentinel
    finally:
        if sentinel is not None:
            sentinel.stop()
        replica.stop()
        primary.stop()


def post_until_accepted(client: httpx.Client, token: str, message: str, timeout: float = 30) -> int:
    """During a failover a post gets 503 (nothing stored); the client retries, as Retry-After says."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.post("/statuses", data={"message": message}, headers={"Authorization": f"Bearer {token}"})
        if answer.status_code == 201:
            return answer.json()["id"]
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, "no primary came back"
        time.sleep(min(0.2, float(answer.headers.get("Retry-After", 1))))


def test_a_stream_survives_the_primary_failing_over_to_its_replica(sentinel_setup):
    primary, replica, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}"
    with ServerProcess("--redis", url) as server:
        with httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
            stream = Stream(client, "sample", identifier=unique("failover"), percent=100)
            _, token = signup(client)
            posted = [post_until_accepted(client, token, f"before {i}") for i in range(5)]
            assert stream.collect(5) == posted
            assert redis.Redis(port=primary.port).wait(1, 5000) == 1  # the replica has all of it

            primary.kill()
            wait_until(lambda: sentinel.primary_port() == replica.port, timeout=30, what="the failover")
            posted += [post_until_accepted(client, token, f"after {i}") for i in range(5)]
            assert stream.collect(10) == posted
            stream.poll(timeout=0.5)
            assert stream.ids() == posted  # nothing lost, nothing twice


def test_sentinel_urls_are_read_or_refused_clearly():
    assert parse("redis+sentinel://a:1,b/svc/2") == ([("a", 1), ("b", 26379)], "svc", 2, None, None)
    assert parse("redis+sentinel://:secret@h:5/svc")[4] == "secret"
    for bad in ("redis+sentinel://h:1", "redis+sentinel://h:x/svc", "redis+sentinel://h/svc/notadb"):
        with pytest.raises(ValueError):
            parse(bad)
