"""The browser client's own unit tests (Node's built-in runner), and the proof that the files
meant for old browsers are ES5, run as part of the suite."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.npm import npm_modules, require_tool
from tests.procs import ROOT

ACORN = "acorn@8.15.0"
LEGACY_FILES = ["web/longpoll.js", "web/jquery.longpoll.js"]
"""What an ES5 browser loads: longpoll.js itself (longpoll.mjs is for module-capable ones) and the jQuery plugin."""


def test_web_client_unit_tests_pass_under_node():
    node = require_tool("node")
    result = subprocess.run([node, "--test", "web/test/"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout


@pytest.fixture(scope="module")
def check_es5():
    node = require_tool("node")
    modules = npm_modules(ACORN)

    def check(*files: str) -> subprocess.CompletedProcess:
        return subprocess.run([node, "web/tools/check-es5.cjs", *files], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env={**os.environ, "NODE_PATH": str(modules)})
    return check


def test_the_files_for_old_browsers_are_es5(check_es5):
    result = check_es5(*LEGACY_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source, problem", [
    ("var f = () => 1;", "not ES5 syntax"),
    ("class A {}", "not ES5 syntax"),
    ("let a = 1;", "not ES5 syntax"),
    ("var s = `x`;", "not ES5 syntax"),
    ("async function f() {}", "not ES5 syntax"),
    ("var o = Object.assign({}, {});", "Object.assign is not in ES5 browsers"),
    ("fetch('/x');", "fetch is not in ES5 browsers"),
    ("var p = new Promise(function () {});", "Promise is not in ES5 browsers"),
    ("if ('abc'.includes('a')) {}", ".includes() is not in ES5 browsers"),
])
def test_the_es5_check_refuses_what_an_old_browser_lacks(check_es5, tmp_path, source, problem):
    """The check above could pass by checking nothing; it refuses each of these."""
    allowed = "var g = typeof globalThis !== 'undefined' ? globalThis : this; if (typeof fetch === 'function') {}\n"
    path = tmp_path / "legacy.js"
    path.write_text(allowed + source + "\n")
    result = check_es5(str(path))
    assert result.returncode == 1 and problem in result.stdout, result.stdout + result.stderr
    path.write_text(allowed)
    assert check_es5(str(path)).returncode == 0
