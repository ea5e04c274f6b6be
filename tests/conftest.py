"""One real CherryPy server per test run, on a free port, with each backend's
app tree mounted under its own prefix, so every HTTP test runs against the
embedded backend and (with Redis, see redisproc.py) the Redis backend alike."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import cherrypy
import httpx
import pytest

from longpoll.server import Settings, build
from tests.apps import Probe

THREADS = 300
"""Enough for the 200-held-polls test with the gate's reserve of a tenth."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait (bounded) for a state the test cannot be notified of, e.g. a poll being held server-side."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="session")
def server() -> Iterator[dict[str, object]]:
    port = free_port()
    cherrypy.config.update({
        "server.socket_host": "127.0.0.1",
        "server.socket_port": port,
        "server.thread_pool": THREADS,
        "server.socket_queue_size": 1024,
        "engine.autoreload.on": False,
        "checker.on": False,
        "log.screen": False,
    })
    mounts: dict[str, object] = {}
    root, config, broker = build(Settings())
    cherrypy.tree.mount(root, "/mem", config)
    cherrypy.tree.mount(Probe(broker), "/mem/t", config)
    mounts["mem"] = broker
    cherrypy.engine.start()
    yield {"url": f"http://127.0.0.1:{port}", "brokers": mounts}
    cherrypy.engine.exit()


@pytest.fixture(params=["mem"])
def backend(request: pytest.FixtureRequest, server: dict) -> str:
    return request.param


@pytest.fixture
def base(server: dict, backend: str) -> str:
    return f"{server['url']}/{backend}"


@pytest.fixture
def broker(server: dict, backend: str):
    return server["brokers"][backend]


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c
