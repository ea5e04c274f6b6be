"""One real CherryPy server per test run, on a free port, with each backend's
app tree mounted under its own prefix, so every HTTP test runs against the
embedded backend and (with Redis, see redisproc.py) the Redis backend alike.

The same tree is also served on a second port through ``longpoll.FastPolls``,
as ``longpoll serve`` serves it: every HTTP test runs through both fronts
(CherryPy's handlers, and the fast path for polls that continue a session),
which is how the two are held to the same answers."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator

import cherrypy
import httpx
import pytest
from cheroot import wsgi

import longpoll
from longpoll import FastPolls
from longpoll.endpoint import endpoint_of
from longpoll.server.app import Settings, build
from tests.apps import Probe
from tests.conftest_support import free_port, wait_until
from tests.redisproc import RedisProcess, redis_server_path

THREADS = 300
"""Enough for the 200-held-polls test with the gate's reserve of a tenth."""


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
    probes: dict[str, Probe] = {}
    roots: dict[str, object] = {}
    root, config, broker = build(Settings())
    cherrypy.tree.mount(root, "/mem", config)
    probes["mem"] = cherrypy.tree.mount(Probe(broker), "/mem/t", config).root
    mounts["mem"] = broker
    roots["mem"] = root
    redis_proc = None
    if redis_server_path():
        redis_proc = RedisProcess()
        root, config, broker = build(Settings(redis_url=redis_proc.url))
        cherrypy.tree.mount(root, "/redis", config)
        probes["redis"] = cherrypy.tree.mount(Probe(broker), "/redis/t", config).root
        mounts["redis"] = broker
        roots["redis"] = root
    cherrypy.engine.start()
    fast = FastPolls(cherrypy.tree).discover()
    for prefix, root in roots.items():
        fast.route(f"/{prefix}/topics/", root.topics.__self__.follow, prefix=True)
        for path, handler, is_prefix in root.fast_handlers:  # as longpoll serve: publishes on the front
            fast.routes.handle(f"/{prefix}{path}", handler, prefix=is_prefix)
    fast_port = free_port()
    fast_server = wsgi.Server(("127.0.0.1", fast_port), fast, numthreads=THREADS, request_queue_size=1024)
    fast_server.keep_alive_conn_limit = THREADS
    fast_server.prepare()
    serving = threading.Thread(target=fast_server.serve, name="fast-path server", daemon=True)
    serving.start()
    asgi_port, asgi_server = free_port(), None
    if importlib.util.find_spec("uvicorn") is not None:
        asgi_server = start_asgi(asgi_port, longpoll.asgi(cherrypy.tree, engine=False, routes=fast.routes))
    yield {"url": f"http://127.0.0.1:{port}", "fast_url": f"http://127.0.0.1:{fast_port}", "brokers": mounts,
           "asgi_url": f"http://127.0.0.1:{asgi_port}" if asgi_server else None,
           "probes": probes, "roots": roots, "redis": redis_proc, "fast": fast}
    if asgi_server is not None:
        asgi_server.should_exit = True
    cherrypy.engine.exit()  # first: its stop answers every held poll and ends every stream, whichever server
    fast_server.stop()  # holds them, so that stopping does not wait for each to time out
    if redis_proc is not None:
        redis_proc.stop()


@pytest.fixture(params=["mem", "redis"])
def backend(request: pytest.FixtureRequest, server: dict) -> str:
    """Every HTTP test runs on both backends; Redis ones skip (fail under CI) without redis-server."""
    if request.param not in server["brokers"]:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (CI must install it: see .ci/run)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return request.param


def start_asgi(port: int, app: object) -> object:
    """uvicorn serving an ASGI app in a thread of this process (the CherryPy engine is the fixture's)."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                            timeout_keep_alive=75, limit_concurrency=None)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    threading.Thread(target=server.run, name="asgi server", daemon=True).start()
    wait_until(lambda: server.started, what="the ASGI server to start")
    return server


@pytest.fixture(params=["cherrypy", "fastpath", "asgi"])
def front(request: pytest.FixtureRequest, server: dict) -> str:
    """Which front answers: CherryPy's handlers, FastPolls before them (any WSGI server), or longpoll.asgi
    (polls held on an event loop, as longpoll serve runs)."""
    if request.param == "asgi" and server["asgi_url"] is None:
        pytest.skip("uvicorn is not installed")
    return request.param


@pytest.fixture
def base(server: dict, backend: str, front: str) -> str:
    return f"{server[{'fastpath': 'fast_url', 'asgi': 'asgi_url'}.get(front, 'url')]}/{backend}"


@pytest.fixture
def broker(server: dict, backend: str):
    return server["brokers"][backend]


@pytest.fixture
def topics_registry(server: dict, backend: str):
    """The registry of the demo's /topics: which of its sessions a poll waits on now (``waiting``).  The
    gate's count is the whole process's, where an earlier test's poll may end meanwhile."""
    return endpoint_of(server["roots"][backend].topics.__self__.follow).registry


@pytest.fixture
def topics_broker(server: dict, backend: str):
    """The broker of the demo's anonymous /topics (a log apart from the statuses')."""
    return server["roots"][backend].topics.__self__.broker


@pytest.fixture
def durable_redis() -> Iterator[RedisProcess]:
    """A redis-server of the test's own that keeps its data across a kill and restart (fsync'd AOF)."""
    proc = RedisProcess(durable=True)
    yield proc
    proc.stop()


@pytest.fixture
def probe(server: dict, backend: str) -> Probe:
    return server["probes"][backend]


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c
