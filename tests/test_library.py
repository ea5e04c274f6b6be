"""The library's own promises to an embedder: encoding, warnings, its public surface, its constructors."""

from __future__ import annotations

import ast
import datetime
import decimal
import logging
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
        time.sleep(1.5)
        yield "late"

    point = endpoint(blocking, name="tests.blocking")
    with caplog.at_level(logging.WARNING, logger="longpoll"):
        status, body = ask(point, timeout=0)
    assert status == 200 and body["items"] == ["late"]
    assert any("tests.blocking" in r.getMessage() and "timeout" in r.getMessage() for r in caplog.records)


def test_a_generator_that_does_not_block_is_not_logged(caplog):
    point = endpoint(lambda: iter(range(3)), name="tests.quick")
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


def test_importing_the_package_imports_no_cherrypy_until_needed():
    import subprocess
    import sys

    probe = ("import sys, longpoll, longpoll.server, longpoll.server.worker; "
             "print('cherrypy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr  # gunicorn's arbiter imports the worker before gevent


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
