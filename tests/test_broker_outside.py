"""Brokers outside the web app: Broker.close and ``with Broker(...)`` (its reader stops for good and, when it opened
its backend, the Redis connections go, so a worker script or a test leaves nothing behind), and the docs' worker
script."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import redis

from longpoll import Broker, plugin
from longpoll.testing import engine
from tests.conftest_support import wait_until
from tests.docblocks import block
from tests.redisproc import RedisProcess


@pytest.fixture(scope="module")
def redis_proc():
    proc = RedisProcess()
    yield proc
    proc.stop()


def connections(proc: RedisProcess) -> int:
    """Clients connected to the test's redis-server, this question's own left out."""
    with redis.Redis(port=proc.port) as admin:
        return len(admin.client_list()) - 1


def received(sub, count: int) -> list:
    got: list = []
    wait_until(lambda: got.extend(sub.drain()) or len(got) >= count, what=f"{count} items")
    return got


def test_a_closed_broker_stops_its_reader_and_closes_its_redis_connections(redis_proc):
    before = connections(redis_proc)
    with engine(), Broker(redis_proc.url, prefix="close-a:") as broker:
        with broker.subscribe("news") as sub:
            wait_until(lambda: broker.hub._reader.running, what="the hub to read")
            broker.publish("news", {"n": 1})
            assert received(sub, 1) == [{"n": 1}]
        assert connections(redis_proc) > before
    assert broker.closed and not broker.hub._reader.running
    assert broker.hub not in plugin.running()[1]  # an engine started again does not start it
    wait_until(lambda: connections(redis_proc) == before, what="the broker's connections to close")
    with pytest.raises(RuntimeError, match="closed"):
        broker.publish("news", {"n": 2})
    broker.close()  # again: nothing


def test_brokers_sharing_a_backend_keep_it_open_until_the_last_closes(redis_proc):
    before = connections(redis_proc)
    with engine():
        first = Broker(redis_proc.url, prefix="close-b:")
        second = Broker(redis_proc.url, prefix="close-b:")
        assert first.backend is second.backend
        with second.subscribe("news") as sub:
            first.publish("news", "warm")
            assert received(sub, 1) == ["warm"]
            first.close()
            second.publish("news", "still")
            assert received(sub, 1) == ["still"]
        second.close()
    wait_until(lambda: connections(redis_proc) == before, what="the shared backend's connections to close")
    third = Broker(redis_proc.url, prefix="close-b:")  # a new backend, not the closed one
    assert third.backend is not first.backend and third.publish("news", "new")
    third.close()


def test_a_broker_given_a_backend_leaves_it_open(redis_proc):
    owner = Broker(redis_proc.url, prefix="close-c:")
    borrower = Broker(backend=owner.backend, name="other")
    borrower.close()
    assert owner.publish("news", "fine")
    owner.close()


def test_an_embedded_broker_closes_too():
    with Broker() as broker:
        position = broker.publish("news", "x")
    assert position == "1" and broker.closed
    with pytest.raises(RuntimeError):
        broker.feed("news")


def test_the_docs_worker_script_publishes_to_the_apps_sessions(redis_proc, tmp_path):
    script = block("docs/embedding.md", "worker-script", "python")
    assert "redis://127.0.0.1:6379/0" in script
    (tmp_path / "worker.py").write_text(script.replace("redis://127.0.0.1:6379/0", redis_proc.url))
    with engine(), Broker(redis_proc.url) as app_broker, app_broker.subscribe("news") as sub:  # the app's side
        wait_until(lambda: app_broker.hub._reader.running, what="the app's hub to read")
        done = subprocess.run([sys.executable, str(tmp_path / "worker.py"), "from a worker"], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert received(sub, 1) == [{"title": "from a worker"}]
    assert re.fullmatch(r"published at \d+-\d+\n", done.stdout), done.stdout  # a Redis stream ID
