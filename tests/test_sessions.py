"""CherryPy's own sessions inside a long-poll, on every storage class CherryPy ships.

The generator's first step reads ``cherrypy.session`` (FileSession asserted its lock there: a 500 on the
first poll), and a held poll lets its user's lock go, so the same user's other pages do not wait for it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import cherrypy
import httpx
import pytest

import longpoll
from tests.conftest_support import free_port, wait_until

STORAGE = ["ram", "file", "memcached"]


@pytest.fixture(scope="module")
def memcached() -> Iterator[str]:
    binary = shutil.which("memcached")
    try:
        import memcache  # noqa: F401  (what CherryPy's MemcachedSession uses)
    except ImportError:
        binary = None
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("memcached and python-memcached must be installed under CI (see .ci/run)")
        pytest.skip("memcached or python-memcached is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "root"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until(listening, what="memcached to listen")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


class Inbox:
    """A user's inbox: the first step reads the user from the session; then it waits for news."""

    def __init__(self) -> None:
        self.news = longpoll.Signal()
        self.box: list[Any] = []

    @cherrypy.expose
    def login(self, user: str) -> str:
        cherrypy.session["user"] = user
        return "welcome " + user

    @cherrypy.expose
    def page(self) -> str:
        return "hello, " + str(cherrypy.session.get("user"))

    @cherrypy.expose
    @longpoll.json_yield()
    def inbox(self) -> Iterator[Any]:
        yield {"user": cherrypy.session.get("user")}
        while True:
            while self.box:
                yield self.box.pop(0)
            yield self.news


def config(storage: str, memcached_at: str | None, locking: str) -> dict[str, Any]:
    options: dict[str, Any] = {"tools.sessions.on": True, "tools.sessions.locking": locking}
    if storage == "file":
        options["tools.sessions.storage_class"] = cherrypy.lib.sessions.FileSession
        options["tools.sessions.storage_path"] = tempfile.mkdtemp(prefix="longpoll-sessions-")
    elif storage == "memcached":
        options["tools.sessions.storage_class"] = cherrypy.lib.sessions.MemcachedSession
        options["tools.sessions.servers"] = [memcached_at]
        # CherryPy sets a storage class up on the first session of the process only: here, RAM's came first
        cherrypy.lib.sessions.MemcachedSession.setup(servers=[memcached_at])
    return {"/": {**longpoll.JSON_ERRORS, **options}}


@pytest.mark.parametrize("locking", ["implicit", "early"])
@pytest.mark.parametrize("storage", STORAGE)
def test_the_generator_reads_the_session_and_a_held_poll_locks_nobody_out(server, request, storage, locking):
    memcached_at = request.getfixturevalue("memcached") if storage == "memcached" else None
    app = Inbox()
    prefix = f"/tests-sessions-{storage}-{locking}"
    cherrypy.tree.mount(app, prefix, config(storage, memcached_at, locking))
    try:
        with httpx.Client(base_url=server["url"] + prefix, timeout=30) as client:
            assert client.get("/login", params={"user": "ann"}).status_code == 200
            first = client.get("/inbox", params={"timeout": 0})
            assert first.status_code == 200, first.text
            assert first.json()["items"] == [{"user": "ann"}]
            body = first.json()
            answer: dict = {}
            held = threading.Thread(target=lambda: answer.update(client.get(
                "/inbox", params={"key": body["key"], "cursor": body["cursor"], "timeout": 20}).json()))
            held.start()
            wait_until(lambda: longpoll.gate.HELD.held >= 1, what="the poll to be held")
            began = time.monotonic()
            page = client.get("/page")  # the same user, the same session cookie, while the poll is held
            waited = time.monotonic() - began
            assert page.text == "hello, ann" and waited < 5, f"the page waited {waited:.1f} s"
            app.box.append("news")
            app.news.notify()
            held.join(20)
            assert answer["items"] == ["news"]
    finally:
        del cherrypy.tree.apps[prefix]
