"""Session keys: 144 random bits after their marks, URL-safe, and the process's route in a process-local one."""

from __future__ import annotations

import base64
import subprocess
import sys

import cherrypy
import pytest

import longpoll
from longpoll import keys
from longpoll.params import KEY
from longpoll.testing import Client


@cherrypy.expose
@longpoll.json_yield()
def counter():
    n = 0
    while True:
        n += 1
        yield n


@pytest.fixture
def route(monkeypatch):
    def set_route(name: str | None) -> None:
        monkeypatch.setitem(cherrypy.config, "longpoll.route", name)

    monkeypatch.delenv(keys.ROUTE_ENV, raising=False)
    return set_route


def random_bits(key: str) -> int:
    return len(base64.urlsafe_b64decode(key[-keys.RANDOM_CHARS:])) * 8


def test_a_key_is_its_kind_and_144_random_bits(route):
    route(None)
    key = Client(counter).poll()["key"]
    assert key[0] == keys.LOCAL and len(key) == 1 + keys.RANDOM_CHARS and KEY.fullmatch(key)
    assert random_bits(key) == 144
    assert keys.marked(key, keys.DURABLE) == "D" + key[1:]  # the same random part, another kind
    assert keys.route_of(key) is None


def test_a_routed_process_puts_its_name_in_its_local_keys_and_not_in_durable_ones(route):
    route("web2")
    key = Client(counter).poll()["key"]
    assert key.startswith("Lweb2-") and KEY.fullmatch(key) and random_bits(key) == 144
    assert keys.route_of(key) == "web2"
    durable = keys.marked(key, keys.DURABLE)
    assert durable == "D" + key[-keys.RANDOM_CHARS:] and keys.route_of(durable) is None  # accepted anywhere
    for unrouted in ("L" + "a-" + "x" * 22, "L" + "-" * 24, durable):  # random parts that look like a route
        assert keys.route_of(unrouted) is None


def test_the_route_comes_from_the_environment_when_the_config_has_none(route, monkeypatch):
    route(None)
    monkeypatch.setenv(keys.ROUTE_ENV, "b")
    assert Client(counter).poll()["key"].startswith("Lb-")


@pytest.mark.parametrize("bad", ["", "a-b", "a_b", "x" * 33, "é", 7])
def test_a_route_that_would_make_keys_ambiguous_is_refused(route, bad):
    route(None)  # restored after the test, whatever the refused update left
    with pytest.raises(ValueError, match="letters and digits"):
        keys.check_route(bad)
    with pytest.raises(ValueError, match="longpoll.route|letters and digits"):
        cherrypy.config.update({"longpoll.route": bad})


def test_longpoll_serve_refuses_a_bad_route_before_it_listens():
    refused = subprocess.run([sys.executable, "-m", "longpoll.server", "serve", "--route", "a-b"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "letters and digits" in refused.stderr
