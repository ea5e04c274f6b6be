"""`longpoll tail` against a live server: prints, survives a restart, stops cleanly on Ctrl-C."""

from __future__ import annotations

import http.server
import json
import os
import queue
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from longpoll.server.client import Client
from longpoll.server.tail import describe
from tests.conftest_support import free_port, wait_until
from tests.procs import ROOT, ServerProcess

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


class Tail:
    def __init__(self, url: str, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "longpoll.server", "tail", "--url", url, *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors.append), daemon=True).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def next_line(self, timeout: float = 20) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"tail printed nothing in {timeout} s (exit status {self.proc.poll()}); "
                                 f"its stderr: {self.errors[-20:]}") from None


def signup_and_post(url: str, *messages: str) -> list[dict]:
    with httpx.Client(base_url=url, timeout=10) as c:
        token = c.post("/users", data={"login": f"t{os.urandom(4).hex()}"}).json()["token"]
        return [c.post("/statuses", data={"message": m}, headers={"Authorization": f"Bearer {token}"}).json()
                for m in messages]


def sessions(url: str) -> int:
    try:
        return httpx.get(url + "/stats", timeout=5).json()["sessions"]
    except httpx.TransportError:
        return 0


@pytest.mark.parametrize("transport", ["poll", "sse", "ndjson"])
def test_tail_prints_resumes_after_a_restart_and_stops_on_ctrl_c(transport):
    port = free_port()
    server = ServerProcess("--port", str(port))
    url = server.wait_ready()
    tail = Tail(url, "--json", "--track", "tailed", "--transport", transport)
    try:
        wait_until(lambda: sessions(url) >= 1, timeout=20, what="tail's session")
        posted = signup_and_post(url, "tailed one", "not this", "tailed two")
        assert [json.loads(tail.next_line()) for _ in range(2)] == [posted[0], posted[2]]

        server.stop()
        server = ServerProcess("--port", str(port))  # a new process: it knows nothing of tail's session
        server.wait_ready()
        wait_until(lambda: sessions(url) >= 1, timeout=60, what="tail to start a new session")
        again = signup_and_post(url, "tailed after the restart")
        assert json.loads(tail.next_line()) == again[0]
        assert any("retrying" in e or "new one" in e for e in tail.errors)

        tail.proc.send_signal(signal.SIGINT)
        assert tail.proc.wait(15) == 0
        assert not any("Traceback" in e for e in tail.errors)
    finally:
        if tail.proc.poll() is None:
            tail.proc.kill()
        server.stop()


def test_tail_without_json_prints_lines_for_people():
    line = describe({"id": 7, "login": "ann", "message": "two\nlines", "posted": 0, "location": "1,2"})
    assert line.endswith("#7 @ann: two lines  (1,2)")
    assert describe({"id": 7, "deleted": True}) == "[deleted] status 7"


def test_tail_with_a_bad_filter_exits_with_the_servers_message():
    with ServerProcess() as server:
        url = server.wait_ready()
        result = subprocess.run([sys.executable, "-m", "longpoll.server", "tail", "--url", url,
                                 "--locations", "1,2,3"], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert result.returncode == 1 and "locations" in result.stderr and "four numbers" in result.stderr


def test_follow_polls_again_after_a_409_as_the_readme_says():
    """A durable session answered by two processes at once: the loser says 409 and the client polls again."""
    answers = [(409, {"error": "conflict", "message": "another server answered a poll of this session"}),
               (200, {"state": "done", "key": "k", "cursor": "1", "items": [1, 2]})]
    asked: list[str] = []

    class Scripted(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status, body = answers.pop(0)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    retries: list[str] = []
    try:
        with Client(f"http://127.0.0.1:{server.server_address[1]}", timeout=10) as client:
            items = list(client.follow("/s", {"identifier": "x"}, on_retry=lambda why, delay: retries.append(why)))
    finally:
        server.shutdown()
    assert items == [1, 2]
    assert len(asked) == 2 and len(retries) == 1 and retries[0].startswith("409")


Retries = list[tuple[str, float]]


def scripted_follow(answers: list[tuple[int, dict]], monkeypatch) -> tuple[list, Retries, Exception | None]:
    """Client.follow against a server that answers from a script; sleeping is recorded, not done."""
    class Scripted(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.pop(0)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args) -> None:
            pass

    monkeypatch.setattr("longpoll.server.client.time.sleep", lambda seconds: None)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    retries: list[tuple[str, float]] = []
    items: list = []
    failure = None
    try:
        with Client(f"http://127.0.0.1:{server.server_address[1]}", timeout=10) as client:
            def retried(why: str, delay: float) -> None:
                retries.append((why, delay))

            for item in client.follow("/s", {"identifier": "x"}, on_retry=retried):
                items.append(item)
    except Exception as exc:  # what follow raised, for the test to judge
        failure = exc
    finally:
        server.shutdown()
    return items, retries, failure


def ready(key: str, cursor: str, *items) -> tuple[int, dict]:
    return 200, {"state": "ready", "key": key, "cursor": cursor, "items": list(items)}


GONE = (410, {"error": "expired", "message": "gone", "state": "expired"})


def test_a_failed_generator_is_the_end_not_a_restart(monkeypatch):
    failed = (500, {"error": "generator_failed", "message": "the session's generator raised"})
    items, retries, failure = scripted_follow([ready("k1", "1", "first"), failed, GONE, ready("k2", "1", "first")],
                                              monkeypatch)
    assert items == ["first"] and retries == []
    assert failure is not None and getattr(failure, "code", None) == "generator_failed"


def test_backoff_keeps_growing_across_restarts_that_fail_again(monkeypatch):
    script = []
    for n in range(6):  # each new session answers once, then the server has forgotten it
        script += [ready(f"k{n}", "1"), GONE]
    script += [ready("k9", "1", "a"), ready("k9", "2", "b"), (503, {"error": "backend_unavailable", "message": "x"}),
               (200, {"state": "done", "key": "k9", "cursor": "3", "items": ["c"]})]
    items, retries, failure = scripted_follow(script, monkeypatch)
    assert failure is None and items == ["a", "b", "c"]
    restarts = [delay for why, delay in retries if "expired" in why]
    assert restarts[0] == 0 and all(d > 0 for d in restarts[1:])
    assert restarts[-1] > restarts[1]  # grew: the restarts never reached a sound session
    outage = [delay for why, delay in retries if why.startswith("503")]
    assert outage and outage[0] <= 1.0  # once k9 answered twice, the backoff started over
