"""Stopping a process with held polls and open streams takes seconds, not a poll's timeout or a stream's
five minutes, and loses nothing: every held poll is answered at once (503 with retry_ms), every stream
ends, and each client resumes its session afterwards on the restarted process.

Held polls used to keep cheroot's threads busy while it waited for them: SIGTERM with one SSE client
took 5 min 1 s."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

import orjson
import pytest

from bench import client as http
from tests.conftest_support import free_port
from tests.procs import ROOT, ServerProcess

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

FEEDS_APP = ROOT / "tests" / "embedding" / "feeds.py"
HELD = 1000
STREAMS = 100
ON_THE_SIGNAL = 30
"""Seconds within which a held poll answered because the process stops, not because its timeout (60 s) passed.
How long it takes is printed (a figure, under whatever load the machine has), not asserted: on a quiet machine,
about a second."""


async def first_polls(port: int, count: int) -> list[tuple[str, str]]:
    sem = asyncio.Semaphore(50)

    async def one() -> tuple[str, str]:
        async with sem:
            status, body, _ = await http.fetch_once("127.0.0.1", port, http.get("/news?timeout=0"))
            assert status == 200, body
            answer = orjson.loads(body)
            return answer["key"], answer["cursor"]

    return await asyncio.gather(*(one() for _ in range(count)))


async def hold(port: int, key: str, cursor: str, retry: bool = False) -> tuple[int, dict]:
    """A held poll's answer; status 0 when the server closed the connection without one (a poll still in
    its queue when it stopped: the client retries, as on any network error).  With ``retry``, a 503 is
    asked again after its retry_ms, as the clients do."""
    while True:
        try:
            status, body, _ = await http.fetch_once("127.0.0.1", port, http.get(
                f"/news?key={key}&cursor={cursor}&timeout=60"), timeout=120)
        except (http.ConnectionClosed, ConnectionError):
            return 0, {}
        answer = orjson.loads(body)
        if not (retry and status == 503):
            return status, answer
        await asyncio.sleep(answer["retry_ms"] / 1000)


async def stream(port: int, key: str, cursor: str, opened: asyncio.Event, counter: list[int]) -> str:
    """An SSE stream of the session; what ended it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /news HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: {key}.{cursor}"
                 "\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    counter[0] += 1
    if counter[0] == STREAMS:
        opened.set()
    seen = b""
    said = ""  # the stream's last event says why it ends (it was a bare end)
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 120):
            seen = (seen + chunk)[-400:]
            if b"event: stopping" in seen:
                said = ", said stopping"
            if seen.endswith(b"\r\n0\r\n\r\n"):  # its last chunk: the stream ended (the connection may stay)
                return "ended" + said
        return "closed" + said
    except ConnectionError:
        return "reset" + said
    finally:
        writer.close()


async def finished(tasks: list[asyncio.Task], began: float, what: str) -> list:
    """The tasks' results, once all are done (at most ON_THE_SIGNAL), and when they finished, printed as quantiles."""
    times: list[float] = []
    for task in tasks:
        task.add_done_callback(lambda _: times.append(time.monotonic() - began))
    results = await asyncio.wait_for(asyncio.gather(*tasks), ON_THE_SIGNAL)
    times.sort()
    print(f"{what} at (s): " + ", ".join(f"{times[int(q * (len(times) - 1))]:.2f}" for q in (0, 0.5, 0.9, 0.99, 1)))
    return results


def command(server: str, port: int, redis_url: str) -> list[str]:
    """The README's app served as an embedder serves it: cheroot, or longpoll.asgi under uvicorn or granian."""
    if server == "cheroot":
        return [sys.executable, str(FEEDS_APP), str(port), redis_url, str(HELD + STREAMS + 50)]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "feeds:app", "--host", "127.0.0.1", "--port", str(port),
                "--app-dir", str(FEEDS_APP.parent), "--log-level", "warning"]
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--working-dir", str(FEEDS_APP.parent), "--log-level", "warning", "feeds:app"]


@pytest.mark.slow
@pytest.mark.parametrize("server_name", ["cheroot", "uvicorn", "granian"])
def test_sigterm_with_held_polls_and_open_streams_exits_in_seconds_and_loses_nothing(durable_redis, tmp_path,
                                                                                     server_name):
    port = free_port()
    errors = tmp_path / "error.log"
    env = {"ERROR_LOG": str(errors), "PORT": str(port), "REDIS_URL": durable_redis.url,
           "HELD_POLLS": str(HELD + STREAMS + 50), "PYTHONPATH": str(ROOT)}
    start = lambda: ServerProcess(env=env, command=command(server_name, port, durable_redis.url))  # noqa: E731
    server = start()
    server.wait_ready()

    async def run() -> tuple[list, list, list, float]:
        sessions = await first_polls(port, HELD + STREAMS)
        opened, counter = asyncio.Event(), [0]
        streams = [asyncio.create_task(stream(port, key, cursor, opened, counter)) for key, cursor in sessions[HELD:]]
        held = [asyncio.create_task(hold(port, key, cursor)) for key, cursor in sessions[:HELD]]
        await asyncio.wait_for(opened.wait(), 60)
        await asyncio.sleep(0)  # every poll sent; whether each is held yet does not matter: none may wait out
        began = time.monotonic()
        server.proc.terminate()  # SIGTERM
        answers = await finished(held, began, "answers arrived")
        ends = await finished(streams, began, "streams ended")
        print({e: ends.count(e) for e in ends})
        answered = time.monotonic() - began
        await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 30)
        return sessions, answers, ends, answered, time.monotonic() - began

    try:
        sessions, answers, ends, answered, took = asyncio.run(run())
    finally:
        server.stop()
    assert answered < ON_THE_SIGNAL and took < ON_THE_SIGNAL + 10, \
        f"answered in {answered:.1f} s, exited in {took:.1f} s"
    assert {status for status, _ in answers} <= {0, 200, 503}
    counts = {code: sum(status == code for status, _ in answers) for code in (503, 200, 0)}
    print(f"{server_name}: answered in {answered:.2f} s, exit in {took:.2f} s; held polls answered "
          f"503: {counts[503]}, 200: {counts[200]}, closed unanswered: {counts[0]}")
    assert all(body.get("retry_ms") for status, body in answers if status == 503)
    assert len(ends) == STREAMS
    assert all(end.endswith("said stopping") for end in ends), ends  # each says why it ends, as polls do (503)
    restarted = start()
    try:
        restarted.wait_ready()
        published = http.post("/publish", "after the restart")

        async def resume() -> list:
            status, _, _ = await http.fetch_once("127.0.0.1", port, published)
            assert status == 200
            return await asyncio.gather(*(hold(port, key, cursor, retry=True) for key, cursor in sessions))

        again = asyncio.run(resume())
        assert all(status == 200 and body["items"] == ["after the restart"] for status, body in again), \
            ([body for status, body in again if status != 200][:3], errors.read_text()[-5000:])
    finally:
        restarted.stop()


@pytest.mark.slow
def test_an_autoreload_with_a_held_poll_and_an_open_stream_takes_seconds(durable_redis, tmp_path):
    """Autoreload with one held poll took 30 s; with one SSE client, 5 minutes."""
    app = tmp_path / "feeds.py"
    app.write_text(FEEDS_APP.read_text())
    port = free_port()
    errors = tmp_path / "error.log"
    server = ServerProcess(command=[sys.executable, str(app), str(port), durable_redis.url],
                           env={"AUTORELOAD": "1", "PYTHONPATH": str(ROOT), "ERROR_LOG": str(errors)})
    try:
        server.wait_ready()

        async def run() -> tuple[float, tuple[int, dict], str, tuple[str, str]]:
            (key, cursor), (skey, scursor) = await first_polls(port, 2)
            opened, counter = asyncio.Event(), [STREAMS - 1]
            streaming = asyncio.create_task(stream(port, skey, scursor, opened, counter))
            held = asyncio.create_task(hold(port, key, cursor))
            await asyncio.wait_for(opened.wait(), 30)
            for _ in range(300):  # the stream holds a place too: wait until the poll holds the second, and
                # the autoreloader has looked at the files once (an edit before that is what it starts from)
                _, counts, _ = await http.fetch_once("127.0.0.1", port, http.get("/held"))
                held_now, watched, boot, _ = counts.split()
                if int(held_now) >= 2 and int(watched):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"the poll was not held: {counts!r}")
            began = time.monotonic()
            app.write_text(app.read_text() + "\n# edited\n")  # a developer saves the file
            answer = await asyncio.wait_for(held, ON_THE_SIGNAL)
            ended = await asyncio.wait_for(streaming, ON_THE_SIGNAL)
            return time.monotonic() - began, answer, ended, (key, cursor), boot

        took, answer, ended, (key, cursor), old = asyncio.run(run())
        assert took < ON_THE_SIGNAL, f"the reload took {took:.1f} s to answer the held poll and end the stream"
        assert answer[0] in (0, 200, 503) and ended in ("ended, said stopping", "closed, said stopping",
                                                        "reset, said stopping")

        async def after() -> tuple[int, dict, float]:
            began = time.monotonic()
            while True:  # the process re-executes itself: wait until the new one serves (bounded by the timeout)
                try:
                    _, counts, _ = await http.fetch_once("127.0.0.1", port, http.get("/held"))
                    if counts.split()[2] != old and counts.split()[3] == b"STARTED":
                        break
                except (OSError, http.ConnectionClosed):
                    pass
                await asyncio.sleep(0.05)
            reloaded = time.monotonic() - began + took
            status, _, _ = await http.fetch_once("127.0.0.1", port, http.post("/publish", "after the reload"))
            assert status == 200
            return (*await hold(port, key, cursor, retry=True), reloaded)

        status, body, reloaded = asyncio.run(after())
        print(f"autoreload: held poll and stream answered in {took:.2f} s, the new process served at {reloaded:.2f} s")
        assert reloaded < ON_THE_SIGNAL + 10
        assert status == 200 and body["items"] == ["after the reload"], (status, body, errors.read_text()[-3000:])
    finally:
        server.stop()


LATE_APP = '''
import os, time
import cherrypy
import longpoll
from longpoll.server.granian import announce

class Late:
    @cherrypy.expose
    def index(self):
        cherrypy.response.headers["Content-Length"] = "4"

        def body():
            yield b"done"
            time.sleep(1)  # the client has its whole answer; the app's thread is not done with it

        return body()

    index._cp_config = {"response.stream": True}

async def started():  # the lifespan starts before granian listens: say "serving" once it does
    port = int(os.environ["PORT"])
    announce("127.0.0.1", port, f"serving on http://127.0.0.1:{port}/ (late)")

cherrypy.config.update({"environment": "production", "log.screen": False})
cherrypy.tree.mount(Late(), "/late")
app = longpoll.asgi(cherrypy.tree, on_started=started)
'''


def test_a_stop_waits_for_the_apps_threads_before_the_loop_goes(tmp_path):
    """granian ends the lifespan once clients have their answers; a thread of the app still finishing
    one then handed its last message to a loop that no longer ran, and the worker never exited."""
    (tmp_path / "late.py").write_text(LATE_APP)
    port = free_port()
    server = ServerProcess(env={"PORT": str(port), "PYTHONPATH": str(ROOT)}, command=[
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
        "--working-dir", str(tmp_path), "late:app"])
    try:
        url = server.wait_ready()
        status, body, _ = asyncio.run(http.fetch_once("127.0.0.1", port, http.get("/late/")))
        assert (status, body) == (200, b"done"), url
        began = time.monotonic()
        server.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(20)
        took = time.monotonic() - began
    finally:
        server.stop()
    assert server.proc.returncode == 0 and took < 15, (f"exit {server.proc.returncode} after {took:.1f} s",
                                                      "".join(server.output)[-3000:])
