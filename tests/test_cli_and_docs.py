"""The README's promises: `longpoll serve` runs without Redis; the embedding example works as written."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading

import httpx

from tests.conftest_support import free_port, wait_until
from tests.procs import ROOT, ServerProcess


def readme_block(marker: str) -> str:
    return _block((ROOT / "README.md").read_text(), marker)


def docs_block(page: str, marker: str) -> str:
    """The code block under ``marker`` in ``docs/<page>``."""
    return _block((ROOT / "docs" / page).read_text(), marker)


def _block(text: str, marker: str) -> str:
    after = text.split(marker, 1)[1]
    return re.search(r"```\w*\n(.*?)```", after, re.S).group(1)


def test_serve_starts_on_the_embedded_backend_and_stops_cleanly(tmp_path):
    env = {"LONGPOLL_REDIS_URL": "", "PATH": "/usr/bin:/bin"}  # and no redis-server on the PATH
    with ServerProcess(env=env) as server:
        url = server.wait_ready()
        assert "memory backend" in "".join(server.output)
        assert httpx.get(url + "/healthz", timeout=10).json() == {"status": "ok"}
        assert httpx.get(url + "/primes", params={"limit": 10}, timeout=10).json()["items"] == [2, 3, 5, 7]
        assert server.stop() == 0


def test_access_log_only_when_asked():
    """Off by default (serve skips CherryPy's per-request formatting), on with --access-log: granian's, one line
    for every request, whether the event loop or CherryPy answered it."""
    for args, logged in (((), False), (("--access-log",), True)):
        with ServerProcess(*args) as server:
            url = server.wait_ready()
            assert httpx.get(url + "/primes?limit=5", timeout=10).status_code == 200  # answered on the loop
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200  # answered by CherryPy
            assert server.stop() == 0, "".join(server.output)
        for path in ("/primes", "/healthz"):
            lines = [line for line in server.output if f'"GET {path} HTTP/1.1" 200' in line]
            assert len(lines) == (1 if logged else 0), (args, lines)


def test_serve_rejects_bad_options():

    result = subprocess.run([sys.executable, "-m", "longpoll.server", "serve", "--idle-timeout", "-5"],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 2 and "must be positive" in result.stderr
    for url, says in (("bogus://user:secret@x", "not bogus://"), ("redis+sentinel://h:1", "a Sentinel URL is"),
                      ("redis+cluster://h:7000", "Redis Cluster (redis+cluster://) is not supported yet")):
        result = subprocess.run([sys.executable, "-m", "longpoll.server", "serve", "--redis", url],
                                capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
        assert "secret" not in result.stderr


def test_readme_embedding_example_runs_as_written(tmp_path):
    source = readme_block("<!-- embed-example -->")
    path = tmp_path / "news.py"
    path.write_text(source)
    port = free_port()
    with ServerProcess(command=[sys.executable, str(path)], env={"PORT": str(port)}) as server:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(300):  # the example prints nothing of ours; wait for its port
                try:
                    primes = client.get("/primes", params={"limit": 20, "max": 3}).json()
                    break
                except httpx.TransportError:
                    threading.Event().wait(0.1)
            else:
                raise AssertionError("example did not start:\n" + "".join(server.output))
            assert primes["items"] == [2, 3, 5]
            first = client.get("/news", params={"timeout": 0}).json()
            result = {}

            def hold():
                result["body"] = client.get("/news", params={"key": first["key"], "cursor": first["cursor"],
                                                             "timeout": 30}).json()

            waiter = threading.Thread(target=hold)
            waiter.start()
            # The session subscribed at its first poll, so the item waits for the held poll either way.
            published = client.post("/publish", json={"hi": 1})
            assert published.status_code == 200 and "position" in published.json()
            waiter.join(timeout=40)
            assert result["body"]["items"] == [{"hi": 1}]


def test_signup_post_and_delete_from_the_command_line():
    import os

    def longpoll(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "LONGPOLL_URL": url, "LONGPOLL_TOKEN": token or ""}
        return subprocess.run([sys.executable, "-m", "longpoll.server", *args], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, env=env)

    with ServerProcess() as server:
        url = server.wait_ready()
        made = longpoll("signup", "cli_user")
        assert made.returncode == 0, made.stderr
        token = re.search(r"LONGPOLL_TOKEN=(\S+)", made.stdout).group(1)
        assert longpoll("signup", "CLI_USER").returncode == 1  # taken, case-insensitively
        assert "a token is needed" in longpoll("post", "hi").stderr
        posted = longpoll("post", "hello from the cli", "--location", "-33.87,151.21", token=token)
        assert posted.returncode == 0, posted.stderr
        status_id = int(re.search(r"posted status (\d+)", posted.stdout).group(1))
        status = httpx.get(f"{url}/statuses/{status_id}", timeout=10).json()
        assert status["message"] == "hello from the cli" and status["location"] == "-33.87,151.21"
        bad = longpoll("post", "x", "--location", "north", token=token)
        assert bad.returncode == 1 and "location" in bad.stderr
        assert longpoll("delete", str(status_id), token=token).returncode == 0
        assert httpx.get(f"{url}/statuses/{status_id}", timeout=10).status_code == 404


def test_serve_keeps_many_polling_clients_connected():
    """cheroot alone closes a connection once 10 others wait between requests; long-poll clients all do."""
    with ServerProcess() as server:
        url = server.wait_ready()
        clients = [httpx.Client(base_url=url, timeout=10) for _ in range(30)]
        try:
            closed = []
            for _ in range(2):
                for client in clients:  # each leaves its connection waiting before the next one asks
                    answer = client.get("/healthz")
                    assert answer.status_code == 200
                    closed.append(answer.headers.get("connection", "").lower() == "close")
            assert not any(closed), f"{sum(closed)} of {len(closed)} answers closed their connection"
        finally:
            for client in clients:
                client.close()


def test_a_stop_that_reaches_the_worker_first_is_a_stop_not_a_crash():
    """A signal to the whole process group reaches the worker as well; on a busy machine it could be done
    before granian's main process acted on its own copy, which granian took for a crash (exit status 1, CI)."""
    with ServerProcess() as server:
        server.wait_ready()
        spawned = lambda: [line for line in server.output if "Spawning worker-1" in line]  # noqa: E731
        wait_until(spawned, timeout=20, what="granian to say which process is its worker")  # its own stream
        worker = int(re.search(r"Spawning worker-1 with PID: (\d+)", spawned()[0]).group(1))
        os.kill(worker, signal.SIGTERM)  # the worker's copy of the signal, first
        wait_until(lambda: not os.path.exists(f"/proc/{worker}"), timeout=20, what="the worker to exit")
        server.proc.send_signal(signal.SIGTERM)  # then the main process's
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(20)
        assert server.proc.returncode == 0, "".join(server.output)
    said = "".join(server.output)
    assert "Unexpected exit" not in said and "Respawning" not in said, said
