"""The library's own promises to an embedder: encoding, warnings, its public surface, its constructors."""

from __future__ import annotations

import ast
import datetime
import decimal
import logging
import threading
import time
from pathlib import Path
from typing import Any

import cherrypy
import pytest

import longpoll
from longpoll import Registry, SessionLimits
from longpoll.endpoint import Endpoint
from longpoll.params import NO_BODY


def endpoint(func: Any, **options: Any) -> Endpoint:
    """An endpoint's poll without any HTTP: what json_yield puts behind the handler."""
    handler = longpoll.json_yield(**options)(func)
    return handler.endpoint


def ask(point: Endpoint, **params: Any) -> tuple[int, dict[str, Any]]:
    import orjson

    status, _, body = point.answer("GET", (), {k: str(v) for k, v in params.items()}, {}, NO_BODY,
                                   lambda: "192.0.2.1")
    return status, orjson.loads(body)


def test_an_item_json_cannot_carry_ends_the_session_after_the_items_before_it():
    def gen():
        yield 1
        yield 2
        yield decimal.Decimal("3.5")
        yield 4

    point = endpoint(gen)
    status, body = ask(point, max=10, timeout=0)
    assert status == 200 and body["items"] == [1, 2]  # the good ones are delivered
    status, again = ask(point, key=body["key"], cursor=body["cursor"], timeout=0)
    assert status == 500 and again["error"] == "generator_failed"
    status, after = ask(point, key=body["key"], cursor=body["cursor"], timeout=0)
    assert status == 410  # and it does not wedge: the session is over


@pytest.mark.parametrize("item", [b"bytes", {1, 2}, object()])
def test_other_unencodable_items_fail_the_same_way(item):
    point = endpoint(lambda: iter([item]))
    status, body = ask(point, timeout=0)
    assert status == 500 and body["error"] == "generator_failed"


def test_default_encodes_what_json_has_no_type_for():
    point = endpoint(lambda: iter([decimal.Decimal("3.5"), {1, 2}]),
                     default=lambda o: str(o) if isinstance(o, decimal.Decimal) else sorted(o))
    status, body = ask(point, timeout=0)
    assert status == 200 and body["items"] == ["3.5", [1, 2]]


def test_the_documented_conversions():
    when = datetime.datetime(2026, 11, 23, 12, 30, tzinfo=datetime.timezone.utc)
    point = endpoint(lambda: iter([when, (1, 2), {3: "three"}, datetime.date(2026, 1, 2)]))
    status, body = ask(point, timeout=0)
    assert body["items"] == ["2026-11-23T12:30:00+00:00", [1, 2], {"3": "three"}, "2026-01-02"]


def test_a_generator_that_blocks_is_logged_naming_its_endpoint(caplog):
    def blocking():
        threading.Event().wait(0.5)  # blocks the thread: what the warning is about
        yield "late"

    point = endpoint(blocking, name="tests.blocking")
    point.overrun_warning = 0.25
    with caplog.at_level(logging.WARNING, logger="longpoll"):
        status, body = ask(point, timeout=0)
    assert status == 200 and body["items"] == ["late"]
    assert any("tests.blocking" in r.getMessage() and "timeout" in r.getMessage() for r in caplog.records)


def test_a_generator_that_does_not_block_is_not_logged(caplog):
    point = endpoint(lambda: iter(range(3)), name="tests.quick")
    point.overrun_warning = 0.25
    with caplog.at_level(logging.WARNING, logger="longpoll"):
        ask(point, timeout=0)
    assert not [r for r in caplog.records if "tests.quick" in r.getMessage()]


def test_the_public_surface_has_what_its_arguments_need():
    for name in ("SessionLimits", "PollLimits", "TooManyRequests", "TooManySessions", "MethodNotAllowed",
                 "RequestTimeout", "PayloadTooLarge", "Plugin", "FastPolls", "web_config", "tune_cheroot"):
        assert getattr(longpoll, name) is not None, name
    assert set(longpoll.__all__) <= set(dir(longpoll))
    assert issubclass(longpoll.TooManyRequests, longpoll.LongPollError)


def test_limits_are_named_for_what_they_limit():
    handler = longpoll.json_yield(poll_limits=longpoll.PollLimits(max_timeout=5),
                                  session_limits=SessionLimits(max_sessions=7))(lambda: iter(()))
    assert handler.registry.limits.max_sessions == 7
    with pytest.raises(TypeError):
        longpoll.json_yield(limits=longpoll.PollLimits())  # the old, ambiguous name


def test_two_ways_of_saying_max_sessions_is_an_error_not_a_silent_pick():
    with pytest.raises(ValueError, match="not both"):
        Registry(max_sessions=5, session_limits=SessionLimits(max_sessions=9))
    with pytest.raises(ValueError, match="not both"):
        longpoll.json_yield(max_sessions=5, session_limits=SessionLimits(max_sessions=9))
    assert Registry(max_sessions=5).max_sessions == 5


def test_constructors_leave_the_engine_alone():
    def listeners() -> dict[str, set]:
        return {channel: set(found) for channel, found in cherrypy.engine.listeners.items()}

    before = listeners()
    Registry()
    longpoll.Broker()
    longpoll.json_yield()(lambda: iter(()))
    assert listeners() == before


def test_an_app_that_embeds_the_library_imports_nothing_of_the_server_product():
    import subprocess
    import sys

    product = ("granian", "prometheus_client", "longpoll.server", "a2wsgi", "httpx", "uvloop")
    probe = ("import sys, longpoll; longpoll.json_yield, longpoll.Broker, longpoll.Plugin, longpoll.web_config; "
             f"print(sorted(m for m in {product!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", (result.stdout, result.stderr)


def test_the_pool_sized_for_n_held_polls_lets_n_wait():
    from longpoll.sizing import pool_for, reserve

    for held in (1, 9, 10, 100, 999, 1000, 1001, 12345):
        pool = pool_for(held)
        assert pool - reserve(pool) >= held > pool - 1 - reserve(pool - 1)  # enough, and no more


def imported_modules(path: Path, root: Path) -> list[str]:
    """Every module a file imports, relative imports resolved against its package."""
    package = ["longpoll", *path.relative_to(root).parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            found.append(".".join([*base, *([node.module] if node.module else [])]))
    return found


def test_imports_run_one_way_the_library_never_imports_the_server_product(tmp_path):
    """An embedder installs the library alone: nothing outside longpoll/server/ may import it."""
    root = Path(longpoll.__file__).parent
    offenders = [f"{path.relative_to(root)}: {name}" for path in root.rglob("*.py")
                 if "server" not in path.relative_to(root).parts
                 for name in imported_modules(path, root) if name.startswith("longpoll.server")]
    assert offenders == []
    # the check sees a relative import of the product from a subpackage
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "x.py").write_text("from ..server import app\nfrom . import feed\n")
    assert imported_modules(tmp_path / "streams" / "x.py", tmp_path) == ["longpoll.server", "longpoll.streams"]


# -- what a developer gets wrong, said early ------------------------------------------------


def test_an_async_function_is_refused_when_decorated():
    async def feed():
        return []

    async def stream():
        yield 1

    for func in (feed, stream):
        with pytest.raises(TypeError, match="async"):
            longpoll.json_yield()(func)


def test_a_function_that_returns_no_iterator_says_what_it_returned():
    status, body = ask(endpoint(lambda: 42, name="tests.fortytwo"), timeout=0)
    assert status == 500 and body["error"] == "generator_failed"
    assert "returned int, not an iterator" in body["message"]


def test_integers_of_any_size_are_delivered():
    status, body = ask(endpoint(lambda: iter([2**70, {"n": -(2**100)}, [1, 2**64]])), timeout=0)
    assert status == 200 and body["items"] == [2**70, {"n": -(2**100)}, [1, 2**64]]


def test_the_failure_message_names_the_type_that_could_not_be_encoded():
    def gen():
        yield 1
        yield {"price": decimal.Decimal("1.5")}

    point = endpoint(gen)
    status, body = ask(point, timeout=0)
    assert status == 200 and body["items"] == [1]
    status, failed = ask(point, key=body["key"], cursor=body["cursor"], timeout=0)
    assert status == 500 and "Decimal" in failed["message"] and "dict" not in failed["message"]


def test_publish_returns_a_position_that_orders_as_positions_do():
    broker = longpoll.Broker()
    first, second = broker.publish("t", 1), broker.publish("t", 2)
    positions = [broker.publish("t", n) for n in range(9)]
    assert first < second and positions == sorted(positions) and str(positions[-1]) == positions[-1]
    assert not "9" < "10"  # as text, 9 comes after 10 ...
    assert longpoll.broker.Position("9") < "10" and not longpoll.broker.Position("9") < "9"  # ... not as positions


def test_yielding_a_signal_waits_the_first_time_too():
    """The first time a generator yielded a Signal, it was resumed at once (a second look) and spun."""
    signal = longpoll.Signal()
    looks = []

    def gen():
        while True:
            looks.append(time.monotonic())
            yield signal

    point = endpoint(gen)
    started = time.monotonic()
    status, body = ask(point, timeout=0.3)
    assert status == 200 and body["items"] == [] and time.monotonic() - started >= 0.3
    assert looks[0] - started < 0.3 and all(at - started >= 0.3 for at in looks[1:])  # no second look at once


def test_a_signal_notified_while_the_generator_ran_is_looked_at_again_not_missed():
    signal = longpoll.Signal()
    box: list = []

    def gen():
        while True:
            while box:
                yield box.pop()
            box.append("arrived between the look and the yield")  # as a producer on another thread would
            signal.notify()
            yield signal

    status, body = ask(endpoint(gen), timeout=5, max=1)
    assert status == 200 and body["items"] == ["arrived between the look and the yield"]


def test_a_longpoll_error_in_a_plain_handler_answers_as_its_json_error(server):
    """broker.publish() with Redis away was a 500 with a traceback outside json_yield."""
    from tests.conftest_support import free_port

    broker = longpoll.Broker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there: an outage

    class Shop:
        @cherrypy.expose
        @cherrypy.tools.json_in()
        @cherrypy.tools.json_out()
        def order(self):
            return {"position": broker.publish("orders", cherrypy.request.json)}

    cherrypy.tree.mount(Shop(), "/tests-shop", {"/": longpoll.JSON_ERRORS})
    try:
        import httpx

        answer = httpx.post(server["url"] + "/tests-shop/order", json={"sku": 1}, timeout=30)
    finally:
        del cherrypy.tree.apps["/tests-shop"]
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["error"] == "backend_unavailable" and body["retry_ms"] >= 1000 and answer.headers["Retry-After"]
    assert "Traceback" not in answer.text


def test_longpoll_logs_through_cherrypys_log_error_and_access_both_fronts(server, tmp_path):
    """A generator's traceback went to stderr through Python's last resort, not to log.error_file, and the polls
    the fast path answered were missing from the access log (17 lines where nginx forwarded 65)."""
    import httpx

    errors, accesses = tmp_path / "error.log", tmp_path / "access.log"
    cherrypy.log.error_file, cherrypy.log.access_file = str(errors), str(accesses)
    try:
        for base in (server["url"], server["fast_url"]):
            first = httpx.get(f"{base}/mem/t/failing", params={"after": 1, "max": 5}, timeout=10).json()
            failed = httpx.get(f"{base}/mem/t/failing", params={"key": first["key"], "cursor": first["cursor"]},
                               timeout=10)
            assert failed.status_code == 500
    finally:
        cherrypy.log.error_file, cherrypy.log.access_file = "", ""
    error_log = errors.read_text()
    assert error_log.count("RuntimeError: this generator fails") == 2 and "LONGPOLL" in error_log
    lines = accesses.read_text().splitlines()
    assert len([line for line in lines if "/mem/t/failing?key=" in line]) == 2, lines  # one per front
    assert all('" 500 ' in line for line in lines if "?key=" in line)


def test_a_script_names_its_endpoints_as_an_import_of_it_would(tmp_path):
    """``python app.py`` in one process and ``uvicorn app:app`` in another: one endpoint name, so a durable
    session made by one is taken over by the other (a trial found 403s after a restart)."""
    import subprocess
    import sys

    (tmp_path / "myapp.py").write_text("import longpoll\n@longpoll.json_yield()\ndef feed():\n    return iter(())\n"
                                       "print(feed.endpoint.name)\n")
    runs = [subprocess.run([sys.executable, *how], cwd=tmp_path, capture_output=True, text=True, timeout=60)
            for how in (["myapp.py"], ["-m", "myapp"], ["-c", "import myapp"])]
    assert [run.stdout.strip() for run in runs] == ["myapp.feed"] * 3, [run.stderr for run in runs]


def test_longpoll_asgi_without_its_extra_names_the_extra_to_install():
    import subprocess
    import sys

    probe = ("import sys; sys.modules['a2wsgi'] = None  # as if the asgi extra were not installed\n"
             "import longpoll\n"
             "try:\n    longpoll.asgi()\n"
             "except ImportError as exc:\n    print(type(exc).__name__, exc.name, exc)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("ImportError ") and "pip install 'longpoll[asgi]'" in result.stdout, \
        result.stdout + result.stderr
