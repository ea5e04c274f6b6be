"""The browser client's own unit tests (Node's built-in runner), run as part of the suite."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.procs import ROOT


def test_web_client_unit_tests_pass_under_node():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed (CI must install it: see .ci/run)")
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--test", "web/test/"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
