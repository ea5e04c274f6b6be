"""longpoll.testing for a real app's tests: the engine without a port, a client that says who polls, and the
HTTP client's headers, basic auth and cookies."""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cherrypy
import pytest

import longpoll
from longpoll.testing import Client, NoRequest, PollError
from tests.docblocks import block, write_readme_app
from tests.procs import ROOT, ServerProcess


@cherrypy.expose
@longpoll.json_yield(bind=lambda params: cherrypy.request.login)
def mine():
    yield "hello"
    yield cherrypy.request.login


@cherrypy.expose
@longpoll.json_yield(bind=lambda params: cherrypy.session.get("user"))
def inbox():
    yield f"for {cherrypy.session['user']}"


def test_bind_in_this_process_says_it_needs_the_tests_login_instead_of_binding_none():
    with pytest.raises(NoRequest, match=r"cherrypy.request.login.*login="):
        Client(mine).poll()
    with pytest.raises(NoRequest, match=r"cherrypy.session.*cherrypy_session="):
        Client(inbox).poll()


def test_a_test_gives_the_login_and_the_session_binds_to_it():
    alice = Client(mine, login="alice")
    assert alice.take(2) == ["hello", "alice"]
    stolen = Client(mine, login="bob")
    stolen.key, stolen.cursor = alice.key, alice.cursor
    with pytest.raises(PollError) as refused:
        stolen.poll()
    assert refused.value.status == 403
    carol = Client(inbox, cherrypy_session={"user": "carol"})
    assert carol.take(1) == ["for carol"]
    assert not hasattr(cherrypy.serving, "session")  # this thread's serving state is as it was


ENGINE_ROUND_TRIP = """
import cherrypy
import longpoll
from longpoll.testing import Client, engine

@cherrypy.expose
@longpoll.json_yield(bind=lambda params: cherrypy.request.login)
def mine():
    yield cherrypy.request.login

assert cherrypy.server.start in cherrypy.engine.listeners["start"]
for user in ("dan", "eve"):  # twice: the engine starts again after the helper's stop
    with engine() as bus:
        assert bus.state == bus.states.STARTED
        assert cherrypy.server.start not in bus.listeners["start"] and not cherrypy.server.running
        assert Client(mine, login=user).take(1) == [user]
    assert cherrypy.server.start in cherrypy.engine.listeners["start"]
print("round trip", cherrypy.engine.state)
"""


def test_the_engine_helper_binds_no_port_and_puts_the_server_back():
    """In a process of its own: this one's engine may be running another test's server."""
    result = subprocess.run([sys.executable, "-c", ENGINE_ROUND_TRIP], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 0 and "round trip states.EXITING" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "main thread is exiting" not in result.stderr, result.stderr


AUTH_APP = """
import cherrypy
import longpoll

USERS = {"alice": "wonder land"}


class Root:
    @cherrypy.expose
    def login(self, user):
        cherrypy.session["user"] = user
        return "welcome " + user

    @cherrypy.expose
    @longpoll.json_yield(bind=lambda params: cherrypy.session.get("user"))
    def inbox(self):
        yield {"user": cherrypy.session.get("user"), "header": cherrypy.request.headers.get("X-Tenant")}


class Private:
    @cherrypy.expose
    @longpoll.json_yield(bind=lambda params: cherrypy.request.login)
    def feed(self):
        yield cherrypy.request.login


cherrypy.config.update({"server.socket_port": 0, "engine.autoreload.on": False})
cherrypy.tree.mount(Root(), "/", {"/": {"tools.sessions.on": True}})
cherrypy.tree.mount(Private(), "/private", {"/": {
    "tools.auth_basic.on": True, "tools.auth_basic.realm": "test",
    "tools.auth_basic.checkpassword": lambda realm, user, password: USERS.get(user) == password}})
cherrypy.engine.start()
print(f"serving on http://127.0.0.1:{cherrypy.server.bound_addr[1]}/ ", flush=True)
cherrypy.engine.block()
"""


@pytest.mark.slow
def test_the_http_client_sends_headers_basic_auth_and_keeps_cookies(tmp_path):
    (tmp_path / "app.py").write_text(AUTH_APP)
    with ServerProcess(command=[sys.executable, str(tmp_path / "app.py")]) as server:
        url = server.wait_ready()
        browser = Client(f"{url}/inbox", headers={"X-Tenant": "t1"})
        assert browser.request("POST", "/login", form={"user": "erin"}) == (200, b"welcome erin")
        assert browser.take(1) == [{"user": "erin", "header": "t1"}]  # the session cookie came back
        assert [c.name for c in browser.cookies] == ["session_id"]
        with pytest.raises(PollError) as refused:
            Client(f"{url}/private/feed").poll()
        assert refused.value.status == 401
        assert Client(f"{url}/private/feed", auth=("alice", "wonder land")).take(1) == ["alice"]
        host = url.removeprefix("http://")
        assert Client(f"http://alice:wonder%20land@{host}/private/feed").take(1) == ["alice"]


@pytest.fixture
def port_8080_taken():
    """8080 held by this test, or by someone else already: either way CherryPy's default port is taken."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8080))
        holder.listen()
    except OSError as exc:
        assert exc.errno == errno.EADDRINUSE, exc  # taken by another process: the condition holds as well
    yield
    holder.close()


def write_tested_app(where: Path) -> None:
    """The README's app on a Redis broker nothing answers (so only the swap can make its test pass), and the
    docs' conftest and test module, as written."""
    write_readme_app(where, redis_url="redis://127.0.0.1:1/0")
    (where / "conftest.py").write_text(block("docs/embedding.md", "testing-conftest", "python"))
    (where / "test_news.py").write_text(block("docs/embedding.md", "testing-example", "python"))


def run_pytest(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           "-p", "no:randomly", str(where)], capture_output=True, text=True, timeout=120, cwd=where)


@pytest.mark.slow
def test_with_8080_taken_a_pytest_of_an_app_through_the_documented_helper_passes(tmp_path, port_8080_taken):
    write_tested_app(tmp_path)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^3 passed", result.stdout, re.MULTILINE), result.stdout[-2000:]


@pytest.mark.slow
def test_with_8080_taken_the_old_way_of_starting_the_engine_ends_pytest_so_the_test_above_can_fail(
        tmp_path, port_8080_taken):
    write_readme_app(tmp_path)
    (tmp_path / "test_old.py").write_text(textwrap.dedent("""
        import cherrypy

        def test_start():
            cherrypy.engine.start()
    """))
    result = run_pytest(tmp_path)
    assert result.returncode == 70, result.stdout[-2000:] + result.stderr[-2000:]
