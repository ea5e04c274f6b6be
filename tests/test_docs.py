"""The documentation: the README stays a short guide, the MkDocs site builds without a warning (a broken link,
a missing page, a name mkdocstrings cannot find), and the nginx config the docs show is the one the proxy test
runs."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.nginx import PROXY
from tests.procs import ROOT

README_MAX_LINES = 350
TEST_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/ruff check . "
                "&& .venv/bin/python -m pytest")
SERVE_COMMAND = "python3 -m venv .venv && .venv/bin/pip install '.[server]' && .venv/bin/longpoll serve"


def test_readme_is_a_short_guide_with_both_commands():
    text = (ROOT / "README.md").read_text()
    lines = text.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"
    under_marker = re.search(r"<!-- test-command -->\n```sh\n(.*?)\n```", text, re.S)
    assert under_marker and under_marker.group(1) == TEST_COMMAND  # what .ci/run executes
    assert SERVE_COMMAND in text


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason="mkdocs and mkdocstrings are not installed (pip install mkdocs 'mkdocstrings[python]')")
def test_site_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    reference = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("json_yield", "Broker", "LongPollError", "PollError", "settle"):
        assert name in reference, f"the API reference lacks {name}"


def test_the_nginx_config_shown_is_the_one_tested():
    shown = (ROOT / "docs" / "deploying.md").read_text()
    for line in PROXY.splitlines():
        line = line.strip()
        if line.startswith(("proxy_", "keepalive")):
            assert line in shown, f"docs/deploying.md's nginx config lacks: {line}"
