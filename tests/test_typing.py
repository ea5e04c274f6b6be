"""The package ships py.typed, so its annotations are a promise to every app that type-checks against it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.procs import ROOT


@pytest.mark.slow
def test_mypy_finds_nothing_in_the_package(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "longpoll"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Success" in result.stdout

