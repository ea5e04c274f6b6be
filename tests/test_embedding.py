"""longpoll inside a CherryPy user's app (tests/embedding/chat.py): config file, sessions with their
default locking, an auth tool, MethodDispatcher, gzip; and the README's example holding 1,000 polls."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest_support import free_port, wait_until
from tests.procs import ROOT, ServerProcess

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

APP = ROOT / "tests" / "embedding"


@pytest.fixture(scope="module")
def chat():
    with ServerProcess(command=[sys.executable, str(APP / "chat.py"), str(APP / "chat.conf")]) as server:
        url = server.wait_ready()
        yield url, server


@contextlib.contextmanager
def logged_in(url: str, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/login", data={"user": user}).status_code == 200
        yield client


def test_the_config_file_raises_no_checker_warnings(chat):
    _, server = chat
    output = "".join(server.output)
    assert "Checker" not in output and "config entry" not in output, output


def test_a_held_poll_does_not_lock_its_user_out_of_their_other_pages(chat):
    url, _ = chat
    with logged_in(url, "alice") as alice:
        same_browser = alice  # one user, one session cookie: another tab, on another connection
        first = alice.get("/api/chat/stream", params={"timeout": 0}).json()
        answer: dict = {}
        held = threading.Thread(target=lambda: answer.setdefault("poll", alice.get(
            "/api/chat/stream", params={"key": first["key"], "cursor": first["cursor"], "timeout": 8})))
        held.start()
        wait_until(lambda: httpx.get(url + "/health", timeout=5).json()["held_polls"] >= 1, what="the poll to park")
        began = time.monotonic()
        said = same_browser.post("/api/chat/say", json={"text": "not stuck"})
        page = same_browser.get("/api/page")
        waited = time.monotonic() - began
        held.join(15)
        assert said.status_code == 200 and page.text == "hello, alice"
        assert waited < 4, f"the user's other requests waited {waited:.1f} s behind their held poll"
        assert answer["poll"].json()["items"] == [{"from": "alice", "text": "not stuck"}]


def test_a_key_is_bound_to_its_sessions_user(chat):
    url, _ = chat
    with logged_in(url, "alice") as alice, logged_in(url, "bob") as bob:
        first = alice.get("/api/chat/stream", params={"timeout": 0}).json()
        stolen = bob.get("/api/chat/stream", params={"key": first["key"], "cursor": first["cursor"], "timeout": 0})
        assert stolen.status_code == 403 and stolen.json()["error"] == "forbidden"


def test_errors_are_json_from_the_config_file_without_padding(chat):
    url, _ = chat
    with httpx.Client(base_url=url, timeout=10) as anonymous:
        refused = anonymous.get("/api/chat/stream")  # the auth tool's 401
        assert refused.status_code == 401 and refused.json()["message"] == "log in first"
        missing = anonymous.get("/nowhere")
        assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"
        assert not missing.content.endswith(b" ")  # CherryPy pads short error bodies for old IE


def test_longpoll_settings_come_from_the_config_file_per_path(chat):
    url, _ = chat
    with logged_in(url, "carol") as carol:
        too_long = carol.get("/api/chat/stream", params={"timeout": 25})  # longpoll.max_timeout = 20 there
        assert too_long.status_code == 400 and too_long.json()["param"] == "timeout"
        assert "20" in too_long.json()["message"]
        assert carol.get("/api/chat/stream", params={"timeout": 0}).status_code == 200


def test_method_edges_under_method_dispatcher(chat):
    url, _ = chat
    with logged_in(url, "dave") as dave:
        head = dave.head("/api/chat/stream", params={"timeout": 0})
        assert head.status_code == 200
        delete = dave.delete("/api/chat/stream")
        assert delete.status_code == 405 and delete.headers["Content-Type"] == "application/json"
        assert delete.json()["error"] == "method_not_allowed" and "GET" in delete.headers["Allow"]


def test_polls_are_gzipped_when_asked(chat):
    url, _ = chat
    with logged_in(url, "erin") as erin:
        with erin.stream("GET", "/api/chat/stream", params={"timeout": 0},
                         headers={"Accept-Encoding": "gzip"}) as answer:
            wire = b"".join(answer.iter_raw())
            assert answer.headers.get("Content-Encoding") == "gzip"
        assert json.loads(gzip.decompress(wire))["state"] == "ready"


def test_the_browser_client_is_served_by_one_mount(chat):
    url, _ = chat
    script = httpx.get(url + "/longpoll/longpoll.js", timeout=10)
    assert script.status_code == 200 and "LongPoll" in script.text
    for name in ("longpoll.mjs", "jquery.longpoll.js"):
        assert httpx.get(f"{url}/longpoll/{name}", timeout=10).status_code == 200, name
    for name in ("index.html", "demo.js", "README.md", "src/engine.js"):  # the client, not the demo or its sources
        assert httpx.get(f"{url}/longpoll/{name}", timeout=10).status_code == 404, name


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(marker)
    block = text[text.index("```python", start) + len("```python"):]
    return block[:block.index("```")]


def test_the_readme_example_holds_1000_polls_as_written(tmp_path: Path):
    (tmp_path / "news.py").write_text(readme_block("<!-- embed-example -->"))
    port = free_port()
    n = 1000
    with ServerProcess(command=[sys.executable, str(tmp_path / "news.py")], env={"PORT": str(port)}) as server:
        base = f"http://127.0.0.1:{port}"

        async def crowd() -> tuple[list[int], int]:
            limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
            async with httpx.AsyncClient(base_url=base, timeout=90, limits=limits) as client:
                for _ in range(300):  # the example prints nothing of ours: wait for its port
                    try:
                        await client.get("/primes", params={"limit": 10})
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                began = time.monotonic()
                firsts = await asyncio.gather(*[client.get("/news", params={"timeout": 0}) for _ in range(n)])
                print(f"\n{n} sessions made in {time.monotonic() - began:.1f} s")
                assert all(r.status_code == 200 for r in firsts), [r.text for r in firsts if r.status_code != 200][:3]
                sessions = [r.json() for r in firsts]
                async def hold(session: dict) -> httpx.Response:
                    # As every client of the protocol does: poll again after a 408, or when a kept-alive
                    # connection turns out closed (cheroot closed it idle the moment it was reused).
                    while True:
                        try:
                            answer = await client.get("/news", params={
                                "key": session["key"], "cursor": session["cursor"], "timeout": 50})
                        except httpx.TransportError:
                            continue
                        if answer.status_code != 408:
                            return answer

                polls = [asyncio.create_task(hold(s)) for s in sessions]
                # Let them arrive and park: the example has no endpoint to ask.  Any not parked yet would
                # take the item on arrival; what is checked is that all 1,000 are answered with it.
                await asyncio.sleep(3)
                ready = await client.get("/primes", params={"limit": 20, "timeout": 0}, timeout=10)
                assert ready.status_code == 200 and ready.json()["items"][:2] == [2, 3]
                published = await client.post("/publish", json={"hi": 1})
                assert published.status_code == 200, published.text
                answers = await asyncio.gather(*polls)
                refused = [(r.status_code, r.text) for r in answers if r.status_code != 200]
                assert not refused, (len(refused), refused[:3])
                return [r.status_code for r in answers], sum(r.json()["items"] == [{"hi": 1}] for r in answers)

        codes, released = asyncio.run(crowd())
        assert codes == [200] * n, "".join(server.output)[-2000:]
        assert released == n
