"""Every server an embedder runs, with the commands docs/embedding.md gives, run as written on the README's app.

- Threaded WSGI servers (gunicorn, waitress, uWSGI): held polls never take the
  threads the app's other pages need, and no session expires while its poll
  waits in the server's queue; the hold gate reads the thread count off the
  server, and says so in the log the first time it turns a poll away.
- ASGI servers (granian, uvicorn, hypercorn) through ``longpoll.asgi``: 2,000
  held polls on two workers, and every one has the next publish within 5 s.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from bench import client as raw
from bench.common import raise_nofile
from longpoll import capacity
from tests.conftest_support import free_port, wait_until
from tests.docblocks import block, command, write_readme_app
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

BIN = Path(sys.executable).parent  # where the servers' commands are installed, beside this Python
DOCS = "docs/embedding.md"
DOCS_PORT = "8000"


def documented(marker: str, port: int) -> list[str]:
    """A command of the docs, as written, on the test's port instead of theirs."""
    line = command(DOCS, marker)
    assert line.count(DOCS_PORT) == 1, line
    return shlex.split(line.replace(DOCS_PORT, str(port)))


class Server:
    """A server's command in its own process group, its output in a file: a pipe this process had to drain
    would slow the servers that log every request (uvicorn writes its access log as it answers)."""

    def __init__(self, argv: list[str], where: Path, port: int):
        self.log = where / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=where, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                                              "XDG_RUNTIME_DIR": str(where)})  # gunicorn's control socket
        try:
            wait_until(lambda: self.proc.poll() is None and answers(f"http://127.0.0.1:{port}/primes?limit=5"),
                       timeout=60, what=f"{argv[0]} to answer")
        except AssertionError:
            self.stop()
            raise AssertionError(f"{argv} did not answer:\n{self.output()[-3000:]}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(argv: list[str], where: Path, port: int) -> Server:
    return Server(argv, where, port)


@pytest.fixture
def alone():
    """One crowd of these at a time across the suite's workers: each measures how soon a server answers,
    and two crowds on two cores would measure each other."""
    with open(Path(tempfile.gettempdir()) / "longpoll-test-servers.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


# -- threaded WSGI servers ---------------------------------------------------------------------------------------

WSGI = {
    # name: (argv on a port, clients, seconds to keep them polling, polls the gate lets wait)
    "gunicorn gthread (docs)": (lambda port: documented("command: gunicorn", port), 50, 35, 6),
    "waitress (docs)": (lambda port: documented("command: waitress", port), 40, 35, 6),
    "uwsgi (docs)": (lambda port: documented("command: uwsgi", port), 30, 5, 6),
    "gunicorn defaults": (lambda port: ["gunicorn", "--bind", f"127.0.0.1:{port}", "wsgi:application"], 20, 5, 0),
    "waitress defaults": (lambda port: ["waitress-serve", "--listen", f"127.0.0.1:{port}", "wsgi:application"],
                          20, 5, 2),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(WSGI))
def test_held_polls_leave_a_threaded_server_room_for_other_pages(name, tmp_path, alone):
    argv, clients, window, held = WSGI[name]
    write_readme_app(tmp_path)
    (tmp_path / "wsgi.py").write_text(block(DOCS, "wsgi-app", "python"))
    port = free_port()
    with start(argv(port), tmp_path, port) as server:
        result = asyncio.run(wsgi_crowd(f"http://127.0.0.1:{port}", clients, window, server))
    output = server.output()
    print(f"\n{name}: {clients} clients for {window} s; another page took {result['page']:.2f} s and "
          f"{result['page_later']:.2f} s; the publish reached every client within {result['delivered']:.2f} s; "
          f"answers {dict(result['codes'])}, {result['dropped']} connections closed under a poll")
    assert result["page"] < 2 and result["page_later"] < 2
    assert result["publish"] == 200 and result["delivered"] < 10
    assert set(result["codes"]) == {200}, result["codes"]  # no 410: no session expired while its poll queued
    assert f"{held} polls wait already" in output and "longpoll.max_held_polls" in output, output[-3000:]


async def wsgi_crowd(base: str, clients: int, window: float, server: Server) -> dict:
    """``clients`` long-poll clients of /news, as the browser client polls (again at once after an answer;
    after ``retry_ms`` when told to wait); another page once the gate is full and again at the end; one
    publish, and how soon every client had it."""
    codes: Counter[int] = Counter()
    dropped = [0]
    got: dict[int, float] = {}
    stop = asyncio.Event()
    published = [0.0]

    async def poll(index: int, http: httpx.AsyncClient) -> None:
        key = cursor = None
        while not stop.is_set():
            params = {"timeout": 25} if key is None else {"key": key, "cursor": cursor, "timeout": 25}
            try:
                answer = await http.get("/news", params=params)
            except httpx.TransportError:  # a kept-alive connection the server closed: poll again, as clients do
                dropped[0] += 1
                continue
            codes[answer.status_code] += 1
            if answer.status_code != 200:
                key = None
                await asyncio.sleep(1)  # as the client backs off after an error
                continue
            body = answer.json()
            key, cursor = body["key"], body["cursor"]
            if body["items"] == ["hi"]:
                got.setdefault(index, time.monotonic() - published[0])
            if body.get("retry_ms"):
                await asyncio.sleep(body["retry_ms"] / 1000)

    async def page() -> tuple[httpx.Response, float]:
        """Another page, on a connection of its own, as another visitor's browser asks it (the crowd's
        client may hold a kept-alive connection the server has closed: uwsgi's router keeps none)."""
        async with httpx.AsyncClient(base_url=base, timeout=30) as visitor:
            began = time.monotonic()
            answer = await visitor.get("/primes", params={"limit": 10})
            return answer, time.monotonic() - began

    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=90, limits=limits) as http:
        began = time.monotonic()
        tasks = [asyncio.create_task(poll(i, http)) for i in range(clients)]
        deadline = time.monotonic() + 30
        while "polls wait already" not in server.output():  # the gate is full: every place it has waits
            assert time.monotonic() < deadline, "the hold gate never filled:\n" + server.output()[-3000:]
            await asyncio.sleep(0.05)
        first, page_took = await page()
        assert first.json()["items"] == [2, 3, 5, 7]
        published[0] = time.monotonic()
        publish = await http.post("/publish", json="hi")
        while len(got) < clients and time.monotonic() - published[0] < 30:
            await asyncio.sleep(0.05)
        while time.monotonic() - began < window:  # the experiment's length: polls queue, answer, and queue again
            await asyncio.sleep(0.2)
        later, later_took = await page()
        assert later.json()["items"] == [2, 3, 5, 7]
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert len(got) == clients, f"{len(got)} of {clients} clients had the publish"
    return {"page": page_took, "page_later": later_took, "publish": publish.status_code,
            "delivered": max(got.values()), "codes": codes, "dropped": dropped[0]}


# -- ASGI servers ------------------------------------------------------------------------------------------------

HELD = 2000

INSTRUMENTS = """

# The test's own, after the docs' app: one address makes every session, and a count of the polls held here.
import os as _os

import longpoll.gate as _gate


class _Held:
    @cherrypy.expose
    def index(self):
        return f"{_os.getpid()} {_gate.HELD.held}"


cherrypy.config.update({"longpoll.max_sessions_per_address": 100_000})
cherrypy.tree.mount(_Held(), "/held")
"""


@pytest.fixture(scope="module")
def redis_url():
    proc = RedisProcess()
    yield proc.url
    proc.stop()


def asgi_app(where: Path, redis_url: str) -> None:
    write_readme_app(where, redis_url=redis_url)  # two workers: the README's Redis broker
    (where / "app.py").write_text(block(DOCS, "asgi-app", "python") + INSTRUMENTS)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("marker", ["command: granian", "command: uvicorn", "command: hypercorn"])
def test_the_documented_asgi_command_holds_2000_polls_and_each_gets_the_next_publish(marker, tmp_path, redis_url,
                                                                                     alone):
    assert raise_nofile() > 2 * HELD + 500, "the open-file limit is too low for this test (ulimit -Hn)"
    asgi_app(tmp_path, redis_url)
    port = free_port()
    with start(documented(marker, port), tmp_path, port) as server:
        delays, retried = asyncio.run(asgi_crowd(port, HELD))
    output = server.output()
    ordered = sorted(delays)
    print(f"\n{command(DOCS, marker)}: {HELD} held; the publish reached them in p50 "
          f"{statistics.median(ordered):.2f} s, p99 {ordered[int(len(ordered) * 0.99)]:.2f} s, "
          f"max {ordered[-1]:.2f} s")
    assert len(delays) == HELD and retried == 0
    assert ordered[-1] < 5, ordered[-10:]
    assert "Traceback" not in output, output[-3000:]


async def asgi_crowd(port: int, n: int) -> tuple[list[float], int]:
    """``n`` sessions each holding a poll on a connection of its own, until the workers show them held; one
    publish; how long each poll took to have it after the publish was sent, and how many were told to retry."""
    retried = [0]
    published: list[float] = []

    async def connect() -> raw.HTTPConnection:
        for _ in range(600):
            try:
                return await raw.connect("127.0.0.1", port)
            except OSError:  # a burst past the listen queue: the kernel's retry, sooner
                await asyncio.sleep(0.1)
        raise AssertionError("could not connect")

    async def session(connection: raw.HTTPConnection, index: int) -> float:
        """Half hold their first poll (it runs in the app's threads, and its waiting moves to the loop), half
        a poll that continues the session (answered on the loop altogether)."""
        answer = None
        if index % 2:
            status, body = await connection.request(raw.get("/news?timeout=0"))
            assert status == 200, body
            answer = orjson.loads(body)
        while True:
            status, body = await connection.request(raw.get("/news?timeout=50" if answer is None else
                                                            f"/news?key={answer['key']}&cursor={answer['cursor']}"
                                                            "&timeout=50"))
            assert status == 200, body
            answer = orjson.loads(body)
            if answer["items"]:
                assert answer["items"] == [{"hi": 1}], answer
                return time.monotonic() - published[0]
            if answer.get("retry_ms"):
                retried[0] += 1
                await asyncio.sleep(answer["retry_ms"] / 1000)

    async def held() -> dict[str, int]:
        seen: dict[str, int] = {}
        for _ in range(20):  # fresh connections: the kernel hands them to both workers
            status, body, _ = await raw.fetch_once("127.0.0.1", port, raw.get("/held/", close=True), timeout=10)
            assert status == 200, body
            pid, count = body.decode().split()
            seen[pid] = int(count)
        return seen

    connections = await asyncio.gather(*[connect() for _ in range(n)])
    polls = [asyncio.ensure_future(session(c, i)) for i, c in enumerate(connections)]
    deadline = time.monotonic() + 120
    while True:
        seen = await held()
        if len(seen) == 2 and sum(seen.values()) >= n:
            break
        assert time.monotonic() < deadline, f"not all held: {seen}"
        await asyncio.sleep(0.2)
    published.append(time.monotonic())
    status, body, _ = await raw.fetch_once("127.0.0.1", port, raw.post("/publish", {"hi": 1}, close=True))
    assert status == 200, body
    delays = await asyncio.wait_for(asyncio.gather(*polls), 60)
    for connection in connections:
        connection.close()
    return list(delays), retried[0]


@pytest.mark.parametrize("argv,warning", [
    # the command the docs once gave: granian's default backpressure, 512 connections a worker with two
    (["granian", "--interface", "asgi", "app:app", "--workers", "2", "--port", "{port}"],
     "granian: 512 open connections per worker (--backpressure, by default --backlog / --workers), fewer than "
     "the 1000 polls"),
    (["uvicorn", "app:app", "--limit-concurrency", "300", "--port", "{port}"],
     "uvicorn: 300 open connections per worker (--limit-concurrency), fewer than the 1000 polls"),
])
def test_a_server_limit_below_the_polls_to_hold_is_warned_of_at_start_naming_the_flag(argv, warning, tmp_path,
                                                                                       redis_url):
    asgi_app(tmp_path, redis_url)
    port = free_port()
    with start([part.replace("{port}", str(port)) for part in argv], tmp_path, port) as server:
        wait_until(lambda: warning in server.output(), timeout=30, what=f"the warning:\n{warning}")
    said = next(line for line in server.output().splitlines() if warning in line)
    assert "raise --" in said  # the flag that changes it


# -- what is read off a command line, with the servers' own parsers --------------------------------------------

@pytest.mark.parametrize("argv,expected", [
    (["granian", "--interface", "asgi", "app:app"], capacity.Server(
        "granian", 1024, "--backpressure, by default --backlog / --workers", per="connection")),
    (["granian", "--interface", "asgi", "--workers", "2", "app:app"], capacity.Server(
        "granian", 512, "--backpressure, by default --backlog / --workers", per="connection")),
    (["granian", "--interface", "asgi", "--backpressure", "20000", "app:app"], capacity.Server(
        "granian", 20000, "--backpressure", per="connection")),
    (["granian", "--interface", "wsgi", "wsgi:application"], capacity.Server(
        "granian's WSGI interface", 512, "--blocking-threads")),
    (["uvicorn", "app:app"], capacity.Server("uvicorn", None, "--limit-concurrency", per="connection")),
    (["uvicorn", "app:app", "--limit-concurrency", "300"], capacity.Server(
        "uvicorn", 300, "--limit-concurrency", per="connection")),
    (["pytest", "tests"], None),
])
def test_a_servers_limit_is_read_off_its_command_line(argv, expected):
    assert capacity._from_argv(tuple([f"/venv/bin/{argv[0]}", *argv[1:]])) == expected


def test_granians_environment_counts_as_it_does_for_granian(monkeypatch):
    monkeypatch.setenv("GRANIAN_BACKPRESSURE", "77")
    capacity._from_argv.cache_clear()
    try:
        assert capacity._from_argv(("/venv/bin/granian", "app:app")).slots == 77
    finally:
        capacity._from_argv.cache_clear()
