"""A LongPollError raised in a plain CherryPy handler or tool (not json_yield) answers its own status and headers.

Found from outside: ``broker.publish()`` while Redis was down, in the README's own publish handler, answered
CherryPy's 500 HTML page with the traceback in it and no Retry-After, 18 times out of 18 through a Redis
restart, where docs/deploying.md promises 503 with Retry-After; a client that retries only 503 gave up."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cherrypy
import httpx
import pytest

import longpoll
from tests.conftest_support import free_port, wait_until
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess
from tests.test_embedding import readme_block


@pytest.mark.slow
def test_the_readmes_publish_handler_answers_503_with_retry_after_while_redis_is_down(tmp_path: Path):
    """The README's example as written, on a Redis broker (the one change its comment suggests)."""
    source = readme_block("<!-- embed-example -->")
    on_redis = source.replace("broker = longpoll.Broker()", 'broker = longpoll.Broker(os.environ["REDIS_URL"])')
    assert on_redis != source, "the README's example no longer makes its broker as this test expects"
    (tmp_path / "news.py").write_text(on_redis)
    redis_proc = RedisProcess()  # no persistence: a restart is an outage and nothing more here
    port = free_port()
    try:
        with ServerProcess(command=[sys.executable, str(tmp_path / "news.py")],
                           env={"PORT": str(port), "REDIS_URL": redis_proc.url}) as server, \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            def publish() -> httpx.Response | None:
                try:
                    return client.post("/publish", json={"n": 1})
                except httpx.TransportError:  # the example prints nothing of ours: its port opens when it does
                    return None

            wait_until(lambda: publish() is not None, timeout=30, what="the example to listen")
            assert publish().status_code == 200  # type: ignore[union-attr]
            redis_proc.kill()
            during = [publish() for _ in range(5)]
            for answer in during:
                assert answer is not None and answer.status_code == 503, (answer and answer.text, server.output[-20:])
                assert int(answer.headers["Retry-After"]) >= 1
                assert "Traceback" not in answer.text  # the example runs with CherryPy's defaults: tracebacks on
                assert answer.headers["Content-Type"].startswith("text/html")  # the app's (CherryPy's) error page
            redis_proc.start()
            wait_until(lambda: (publish() or httpx.Response(0)).status_code == 200, timeout=30,
                       what="publishing to work again once Redis is back")
    finally:
        redis_proc.stop()


class Errors:
    """Handlers and a tool raising what library code raises (broker.publish raises BackendUnavailable)."""

    @cherrypy.expose
    @cherrypy.tools.json_in()
    @cherrypy.tools.json_out()
    def publish(self) -> dict:
        raise longpoll.BackendUnavailable("Redis is unreachable (ConnectionError)")

    @cherrypy.expose
    def busy(self) -> str:
        raise longpoll.TooManyRequests("slow down", retry_after=3)

    @cherrypy.expose
    def big(self) -> str:
        raise longpoll.PayloadTooLarge("at most 10 bytes")

    @cherrypy.expose
    def only_post(self) -> str:
        raise longpoll.MethodNotAllowed("GET", ("POST",))

    @cherrypy.expose
    def guarded(self) -> str:
        return "in"


def refuse_everyone() -> None:
    raise longpoll.Unauthorized("log in first")


cherrypy.tools.tests_refuse_everyone = cherrypy.Tool("before_handler", refuse_everyone)


def own_error_page(status: str, message: str, traceback: str, version: str) -> str:
    return f"our own page: {status}: {message} [{traceback}]"


@pytest.fixture
def mounted(server: dict) -> Iterator[str]:
    """Three apps of one tree: CherryPy's defaults (tracebacks shown), JSON_ERRORS, and an error page of its own."""
    guarded = {"/guarded": {"tools.tests_refuse_everyone.on": True}}
    mounts = {"/tests-errors-plain": {"/": {"request.show_tracebacks": True}, **guarded},
              "/tests-errors-json": {"/": longpoll.JSON_ERRORS, **guarded},
              "/tests-errors-own": {"/": {"error_page.default": own_error_page}, **guarded}}
    for prefix, config in mounts.items():
        cherrypy.tree.mount(Errors(), prefix, config)
    try:
        yield server["url"]
    finally:
        for prefix in mounts:
            del cherrypy.tree.apps[prefix]


@pytest.mark.parametrize("path, status, headers", [
    ("publish", 503, {"Retry-After": "2"}),
    ("busy", 429, {"Retry-After": "3"}),
    ("big", 413, {}),
    ("only_post", 405, {"Allow": "POST"}),
    ("guarded", 401, {}),  # raised by a tool, before any handler
])
def test_each_status_and_its_headers_in_every_kind_of_app(mounted: str, path: str, status: int, headers: dict):
    plain = httpx.post(f"{mounted}/tests-errors-plain/{path}", json={}, timeout=10)
    as_json = httpx.post(f"{mounted}/tests-errors-json/{path}", json={}, timeout=10)
    own = httpx.post(f"{mounted}/tests-errors-own/{path}", json={}, timeout=10)
    for answer in (plain, as_json, own):
        assert answer.status_code == status, answer.text
        assert {name: answer.headers.get(name) for name in headers} == headers
        assert "Traceback" not in answer.text, answer.text  # show_tracebacks is on in the plain app
        assert answer.headers["Cache-Control"] == "no-store"
    assert plain.headers["Content-Type"].startswith("text/html")  # CherryPy's page, with the error's message
    body = as_json.json()
    assert as_json.headers["Content-Type"] == "application/json" and body["error"] != "internal"
    assert not as_json.content.endswith(b" ")  # no padding for old IE on JSON
    assert own.text.startswith(f"our own page: {status} ") and own.text.endswith("[]"), own.text


def test_the_json_answer_is_the_errors_own_body(mounted: str):
    answer = httpx.post(f"{mounted}/tests-errors-json/publish", json={}, timeout=10)
    assert answer.json() == {"error": "backend_unavailable", "message": "Redis is unreachable (ConnectionError)",
                             "retry_ms": 2000}
    plain = httpx.post(f"{mounted}/tests-errors-plain/publish", json={}, timeout=10)
    assert "Redis is unreachable (ConnectionError)" in plain.text and "503 Service Unavailable" in plain.text


def test_a_longpoll_error_is_an_http_error_and_keeps_its_own_code():
    """What lets every CherryPy path answer it; ``code`` stays the error's name, ``status`` its number."""
    error = longpoll.BackendUnavailable()
    assert isinstance(error, cherrypy.HTTPError) and isinstance(error, longpoll.LongPollError)
    assert (error.status, error.code, str(error)) == (503, "backend_unavailable", error.message)
    assert longpoll.BadParameter("max", "too big").body() == {"error": "bad_parameter", "message": "max: too big",
                                                                "param": "max"}
