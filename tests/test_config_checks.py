"""``longpoll.*`` settings checked once, by one set of rules, wherever they stand (longpoll/config_rules.py).

Found from outside: a bad value in ``[global]`` stopped the app, but in a path's section
(``[/room] longpoll.max_timeout = -5``, ``longpoll.default_timeout = "20"``) it was a warning at start and
then a 500 on every poll; ``longpoll.max_sessions = 5000.5`` was taken without a word, and
``longpoll.heartbeat = 100000`` too, far above what a proxy in front waits."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import cherrypy
import pytest

import longpoll
from longpoll import PollLimits, SessionLimits
from longpoll.config import check_tree
from longpoll.config_rules import SettingError, SettingWarning
from longpoll.params import poll_params
from tests.conftest_support import free_port


class Orders:
    _cp_config = {"longpoll.max_timout": 5}

    @cherrypy.expose
    @longpoll.json_yield()
    def news(self):
        return iter(())


class Plain:
    pass


@pytest.fixture
def mount() -> Iterator:
    """Mount apps in cherrypy.tree for one test (the engine is not started: check_tree is what its start runs)."""
    mounted: list[str] = []

    def mount_one(config: dict, root: object = None) -> str:
        prefix = f"/tests-config-{len(mounted)}"
        cherrypy.tree.mount(root if root is not None else Plain(), prefix, config)
        mounted.append(prefix)
        return prefix

    try:
        yield mount_one
    finally:
        for prefix in mounted:
            del cherrypy.tree.apps[prefix]


def problems_of(mount_one, config: dict, root: object = None) -> list[str]:
    prefix = mount_one(config, root)
    with pytest.raises(SettingError) as raised:
        check_tree()
    return [p for p in raised.value.problems if f"mounted at {prefix}" in p]


def test_every_bad_value_in_the_tree_is_one_error_that_names_each(mount):
    found = problems_of(mount, {
        "/news": {"longpoll.max_timeout": -5},
        "/room": {"longpoll.default_timeout": "20"},
        "/big": {"longpoll.max_sessions": 5000.5},
        "/slow": {"longpoll.idle_timout": 5},
        "/held": {"longpoll.max_held_polls": 100},
    }, Orders())
    said = "\n".join(found)
    assert len(found) == 6, said  # the five sections, and the class's _cp_config
    assert "longpoll.max_timeout in [/news] of the app mounted at" in said and "not -5" in said
    assert "docs/protocol.md holds a poll 0-60 s" in said
    assert "longpoll.default_timeout in [/room]" in said and "not the string '20'" in said
    assert "longpoll.max_sessions in [/big]" in said and "has a fraction" in said
    assert "longpoll.idle_timout in [/slow]" in said and "did you mean longpoll.idle_timeout" in said
    assert "longpoll.max_held_polls in [/held]" in said and "global config" in said
    assert "longpoll.max_timout in the _cp_config of / in the app mounted at" in said


@pytest.mark.parametrize("key, value, why", [
    ("max_timeout", 61, "0-60"), ("default_timeout", 0, "above 0"), ("max_items", 5000, "1-1000"),
    ("default_max", 0, "1-1000"), ("max_param_chars", 20, "128 characters"), ("poll_burst", 0.5, "every poll"),
    ("max_sessions_per_address", 0, "at least 1"), ("max_batch_bytes", 1.5, "fraction"),
    ("heartbeat", float("nan"), "not nan"), ("polls_per_second", True, "not True"),
    ("trusted_proxies", ["10.0.0.0/8", "not a network"], "'not a network' is not an address or network"),
])
def test_each_rule_is_said(mount, key: str, value: object, why: str):
    found = problems_of(mount, {"/x": {f"longpoll.{key}": value}})
    assert len(found) == 1 and f"longpoll.{key} in [/x]" in found[0] and why in found[0], found


def test_good_values_pass_and_whole_numbers_may_be_written_as_floats(mount):
    mount({"/": {"longpoll.max_sessions": 5000.0, "longpoll.trusted_proxies": "10.0.0.0/8", "longpoll.heartbeat": None},
           "/x": {"longpoll.max_timeout": 20, "longpoll.default_timeout": 10, "longpoll.max_items": 1000},
           "global": {"longpoll.max_held_polls": 50}},  # an app config's [global], as quickstart takes it
          root=type("Plain", (), {})())
    check_tree()


def test_a_default_above_its_bound_in_one_section_contradicts_it_but_not_from_another(mount):
    found = problems_of(mount, {"/x": {"longpoll.max_timeout": 20, "longpoll.default_timeout": 30},
                                "/y": {"longpoll.max_items": 10, "longpoll.default_max": 50}})
    assert len(found) == 2 and "is 30, above longpoll.max_timeout (20) there" in found[0]
    mount({"/": {"longpoll.default_timeout": 30}, "/x": {"longpoll.max_timeout": 20}})


def test_a_default_above_the_bound_that_applies_is_the_bound():
    """``[/x] longpoll.max_timeout = 20`` under the default default of 25 s: a poll was held 25 s."""
    asked = poll_params({}, PollLimits(max_timeout=5, max_max=10))
    assert (asked.timeout, asked.max_items) == (5, 10)
    assert poll_params({}, PollLimits()).timeout == 25


def test_a_heartbeat_a_proxy_would_cut_is_a_warning_that_says_why(mount):
    mount({"/x": {"longpoll.heartbeat": 100000}})
    with pytest.warns(SettingWarning, match=r"longpoll.heartbeat in \[/x\].*proxy_read_timeout is 60 s"):
        check_tree()


def test_a_bad_global_value_is_refused_as_it_is_set():
    try:
        with pytest.raises(SettingError, match=r"longpoll.max_timeout in \[global\]: must be"):
            cherrypy.config.update({"longpoll.max_timeout": -5})
    finally:
        cherrypy.config.pop("longpoll.max_timeout", None)  # CherryPy stores a value before its namespace sees it


def test_the_stream_budget_is_set_from_the_global_config_and_refused_elsewhere(mount):
    from longpoll.budget import BUDGET, MAX_STREAM_BYTES

    found = problems_of(mount, {"/x": {"longpoll.max_stream_bytes": 2**20}})
    assert len(found) == 1 and "longpoll.max_stream_bytes in [/x]" in found[0] and "global config" in found[0]
    try:
        with pytest.raises(SettingError, match=r"longpoll.max_stream_bytes in \[global\]: must be .* at least 65536"):
            cherrypy.config.update({"longpoll.max_stream_bytes": 1000})
        cherrypy.config.update({"longpoll.max_stream_bytes": 2.0**20})
        assert BUDGET.max_bytes == 2**20 and isinstance(BUDGET.max_bytes, int)
    finally:
        cherrypy.config.pop("longpoll.max_stream_bytes", None)
        BUDGET.max_bytes = MAX_STREAM_BYTES


@pytest.mark.parametrize("arguments, named", [
    ({"idle_timeout": -1}, "idle_timeout of json_yield for"),
    ({"idle_timeout": "60"}, "idle_timeout of json_yield for"),
    ({"max_sessions": 5000.5}, "max_sessions of json_yield for"),
    ({"poll_limits": PollLimits(max_timeout=-5)}, "poll_limits.max_timeout of json_yield for"),
    ({"poll_limits": PollLimits(max_max=5000)}, "poll_limits.max_max of json_yield for"),
    ({"poll_limits": PollLimits(default_timeout=30, max_timeout=20)}, "poll_limits.default_timeout of json_yield"),
    ({"session_limits": SessionLimits(poll_burst=0.5)}, "session_limits.poll_burst of json_yield for"),
    ({"session_limits": SessionLimits(max_per_owner=0)}, "session_limits.max_per_owner of json_yield for"),
    ({"max_body_bytes": 0}, "max_body_bytes of json_yield for"),
])
def test_a_bad_decorator_argument_raises_at_decoration_naming_it(arguments: dict, named: str):
    def feed():
        return iter(())

    with pytest.raises(ValueError, match=named) as raised:
        longpoll.json_yield(**arguments)(feed)
    assert "feed" in str(raised.value)


def test_good_decorator_arguments_decorate_and_a_long_heartbeat_warns():
    longpoll.json_yield(poll_limits=PollLimits(max_timeout=5), max_sessions=7)(lambda: iter(()))
    with pytest.warns(SettingWarning, match="poll_limits.heartbeat of json_yield"):
        longpoll.json_yield(poll_limits=PollLimits(heartbeat=100000))(lambda: iter(()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        longpoll.json_yield(poll_limits=PollLimits(heartbeat=0.2, max_stream_seconds=1.5))(lambda: iter(()))


APP = '''
import os, sys
import cherrypy
import longpoll

broker = longpoll.Broker()


class Root:
    @cherrypy.expose
    @longpoll.json_yield()
    def news(self):
        return broker.feed("news")


cherrypy.config.update({"server.socket_host": "127.0.0.1", "server.socket_port": int(os.environ["PORT"]),
                        "engine.autoreload.on": False})
cherrypy.tree.mount(Root(), "/", os.environ["CONF"])
if __name__ == "__main__":
    cherrypy.engine.start()
    print("serving", flush=True)
    cherrypy.engine.block()
else:
    app = longpoll.asgi(cherrypy.tree)
'''


def run_app(tmp_path: Path, section: str, *command: str) -> subprocess.CompletedProcess:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "app.conf").write_text(textwrap.dedent(section))
    env = {"PORT": str(free_port()), "CONF": str(tmp_path / "app.conf"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_a_bad_value_in_a_paths_section_stops_the_engines_start(tmp_path: Path):
    ran = run_app(tmp_path, "[/news]\nlongpoll.max_timeout = -5\n", "app.py")
    said = ran.stdout + ran.stderr
    assert ran.returncode != 0 and "serving" not in ran.stdout, said
    assert "longpoll.max_timeout in [/news] of the app mounted at /: must be a number above 0" in said, said


@pytest.mark.slow
def test_a_bad_value_in_a_paths_section_fails_the_asgi_lifespan_startup(tmp_path: Path):
    pytest.importorskip("uvicorn")
    ran = run_app(tmp_path, "[/news]\nlongpoll.default_timeout = \"20\"\n",
                  "-m", "uvicorn", "app:app", "--port", "0", "--lifespan", "on")
    said = ran.stdout + ran.stderr
    assert ran.returncode != 0 and "Application startup failed" in said, said
    assert "longpoll.default_timeout in [/news] of the app mounted at /: must be a number" in said, said
    assert "not the string '20'" in said


@pytest.mark.slow
def test_a_good_config_file_still_starts(tmp_path: Path):
    """The control of the two above: the same app, a good value, serves."""
    (tmp_path / "app.py").write_text(APP.replace("cherrypy.engine.block()", "cherrypy.engine.exit()"))
    (tmp_path / "app.conf").write_text("[/news]\nlongpoll.max_timeout = 20\nlongpoll.heartbeat = 15\n")
    env = {"PORT": str(free_port()), "CONF": str(tmp_path / "app.conf"), "PATH": "/usr/bin:/bin"}
    ran = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "serving" in ran.stdout, ran.stdout + ran.stderr


def test_longpoll_serve_at_a_slow_poll_rate_still_lets_one_poll_through():
    """``--max-polls-per-second 0.1`` made a burst of 0.2 polls, under one: every poll of every session was 429."""
    from longpoll.server.app import Settings, build

    root, _, _ = build(Settings(max_polls_per_second=0.1))
    limits = root.statuses.sample_json.registry.limits
    assert (limits.polls_per_second, limits.poll_burst) == (0.1, 1.0)


class Touchy:
    """What apps hang on their trees: an object whose attributes run code, or refuse to be read."""

    @property
    def connection(self):
        raise RuntimeError("no database outside a request")

    def __getattr__(self, name: str):
        raise RuntimeError(f"{name}: working outside of the application context")


def test_looking_for_settings_runs_no_code_of_the_app_and_survives_what_refuses_to_be_read(mount):
    root = Plain()
    root.db = Touchy()
    root.orders = Orders()  # below it, a _cp_config with a typo: still found
    found = problems_of(mount, {}, root)
    assert len(found) == 1 and "longpoll.max_timout in the _cp_config of /orders" in found[0], found
