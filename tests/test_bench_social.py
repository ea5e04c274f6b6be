"""bench.social still runs: its --quick smoke test, with no thresholds (bench/README.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.procs import ROOT
from tests.redisproc import redis_server_path

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


@pytest.mark.timeout(180)
def test_social_benchmark_quick_mode_runs_and_prints_its_figures():
    backends = "memory,redis" if redis_server_path() else "memory"
    result = subprocess.run([sys.executable, "-m", "bench.social", "--quick", "--backends", backends],
                            capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "-m bench.social --quick" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| memory", "| redis"))]
    assert len(rows) == 4 * len(backends.split(","))  # two follower counts, one at a time and in a burst
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
