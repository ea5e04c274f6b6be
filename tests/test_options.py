"""``longpoll serve``'s options: flag over environment over config file over default."""

from __future__ import annotations

import subprocess
import sys

import pytest

from longpoll.server import options
from longpoll.server.app import Settings
from longpoll.server.cli import parser
from tests.procs import ROOT


def resolve(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    errors: list[str] = []

    def error(message: str) -> None:
        errors.append(message)
        raise SystemExit(2)

    args = parser().parse_args(["serve", *argv])
    return options.settings(args, error, environ or {})


def test_defaults_when_nothing_is_given():
    assert resolve([]) == Settings()


def test_flag_over_environment_over_file_over_default(tmp_path):
    conf = tmp_path / "serve.conf"
    conf.write_text('[global]\nserver.socket_port = 9001\nserver.socket_host = "0.0.0.0"\n'
                    "longpoll.idle_timeout = 30\nlongpoll.max_sessions = 500\n"
                    'longpoll.cors_origins = ["https://a.example", "https://b.example"]\n')
    from_file = resolve(["--config", str(conf)])
    assert (from_file.port, from_file.host, from_file.idle_timeout, from_file.max_sessions) == (9001, "0.0.0.0", 30,
                                                                                                  500)
    assert from_file.cors_origins == ("https://a.example", "https://b.example")
    environ = {"LONGPOLL_PORT": "9002", "LONGPOLL_IDLE_TIMEOUT": "20", "LONGPOLL_CORS_ORIGINS": "https://c.example"}
    from_env = resolve(["--config", str(conf)], environ)
    assert (from_env.port, from_env.idle_timeout, from_env.max_sessions) == (9002, 20, 500)
    assert from_env.cors_origins == ("https://c.example",)
    from_flag = resolve(["--config", str(conf), "--port", "9003"], environ)
    assert (from_flag.port, from_flag.idle_timeout, from_flag.host) == (9003, 20, "0.0.0.0")


def test_every_option_has_an_environment_variable_and_a_key():
    fields = {f for f in Settings.__dataclass_fields__}
    covered = {option.field for option in options.OPTIONS}
    assert fields == covered, fields ^ covered
    assert len({option.env for option in options.OPTIONS}) == len(options.OPTIONS)


@pytest.mark.parametrize("where,value", [("env", "soon"), ("env", "-3"), ("file", '"soon"'), ("file", "-3")])
def test_a_bad_value_anywhere_names_where_it_came_from(tmp_path, where, value):
    conf = tmp_path / "serve.conf"
    conf.write_text(f"[global]\nlongpoll.idle_timeout = {value}\n" if where == "file" else "[global]\n")
    environ = {"LONGPOLL_IDLE_TIMEOUT": value} if where == "env" else {}
    result = subprocess.run([sys.executable, "-m", "longpoll.server", "serve", "--config", str(conf)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", **environ})
    assert result.returncode == 2, result.stderr
    assert ("LONGPOLL_IDLE_TIMEOUT" if where == "env" else "longpoll.idle_timeout") in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_key_in_the_file_is_refused(tmp_path):
    conf = tmp_path / "serve.conf"
    conf.write_text("[global]\nlongpoll.idel_timeout = 30\n")
    with pytest.raises(SystemExit):
        resolve(["--config", str(conf)])


def test_help_says_the_order_and_names_each_variable():
    result = subprocess.run([sys.executable, "-m", "longpoll.server", "serve", "--help"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    text = " ".join(result.stdout.split())
    assert "in order: its flag; its environment variable" in text
    assert "LONGPOLL_REDIS_URL" in text and "LONGPOLL_MAX_SESSIONS_PER_ADDRESS" in text


@pytest.mark.parametrize("argv", [["--timeout", "soon"], ["--timeout", "nan"], ["--timeout", "61"], ["--max", "0"],
                                  ["--max", "x"], ["--sample", "101"]])
def test_tail_refuses_options_the_server_would(argv):
    result = subprocess.run([sys.executable, "-m", "longpoll.server", "tail", *argv], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
