"""A handler of the app's own answered on the front (docs/api.md, "Handlers on the front"), run as written
under uvicorn: its publish reaches a held poll, and a bad body is a 400 in the protocol's shape."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest_support import free_port, wait_until
from tests.docblocks import block

pytestmark = pytest.mark.slow  # a server of its own


def test_the_documented_front_handler_publishes_to_a_held_poll(tmp_path: Path):
    if shutil.which("uvicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("uvicorn is not installed (pip install 'longpoll[asgi]' uvicorn)")
    (tmp_path / "events.py").write_text(block("docs/api.md", "front-handler-example", "python"))
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "uvicorn"), "events:app", "--port", str(port)],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base + "/news?timeout=0"), timeout=30, what="uvicorn to answer")
        with httpx.Client(base_url=base, timeout=30) as client:
            made = client.get("/news", params={"topic": "t", "timeout": 0}).json()
            held: list[httpx.Response] = []
            poll = threading.Thread(target=lambda: held.append(client.get(
                "/news", params={"topic": "t", "timeout": 20, "key": made["key"], "cursor": made["cursor"]})))
            poll.start()  # held or not yet when the publish comes: the session's feed began at its first poll
            with httpx.Client(base_url=base, timeout=30) as publisher:
                published = publisher.post("/events/t", json={"text": "hello"})
                bad = publisher.post("/events/t", content=b"{not json", headers={"Content-Type": "application/json"})
            poll.join(25)
        assert published.status_code == 201, published.text
        assert published.json()["topic"] == "t" and published.json()["position"]
        assert held and held[0].status_code == 200 and held[0].json()["items"] == [{"text": "hello"}], held
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/json", bad.text
        assert bad.json()["error"] == "bad_request"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
