"""The benchmarks still run: each one's --quick smoke test, with no thresholds (bench/README.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from bench import nchan, socketio_server
from tests.procs import ROOT
from tests.redisproc import redis_server_path

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

# The benchmarks with a peer row: Nchan (nginx + its module) and the wrk load generator.
PEER_TOOLS = {"heldpolls": ("nchan",), "broadcast": ("nchan",), "readypolls": ("nchan", "wrk"),
              "publishes": ("nchan", "wrk")}
PEER_RATIO = {"heldpolls": "x Nchan's", "broadcast": "/ nchan, release time", "readypolls": "x Nchan's",
              "publishes": "x nchan's"}


def missing_peer_tools(name: str) -> list[str]:
    """What a benchmark's peer rows lack here; under CI a failure (.ci/run installs them), else they are skipped."""
    tools, missing = PEER_TOOLS.get(name, ()), []
    if "nchan" in tools and nchan.missing():
        missing.append(nchan.missing())
    if "wrk" in tools and not shutil.which("wrk"):
        missing.append("wrk not installed: apt-get install -y wrk")
    if missing and os.environ.get("CI"):
        pytest.fail(f"bench.{name}: {'; '.join(missing)} (CI must install them: see .ci/run)")
    return missing


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["heldpolls", "latency", "matching", "overhead", "memory", "broadcast",
                                  "readypolls", "streams", "kept", "backfill", "publishes"])
def test_benchmark_quick_mode_runs_and_prints_its_figures(name):
    missing = missing_peer_tools(name)
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick"], capture_output=True, text=True,
                            timeout=170, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"-m bench.{name} --quick" in result.stdout  # the header names the command
    assert "\n| " in result.stdout, result.stdout[-3000:]  # its table of figures
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if name in PEER_TOOLS and not missing:  # the peer row ran, and the ratio to it was printed
        skipped = [line for line in result.stdout.splitlines() if "skipped" in line and "socketio" not in line]
        assert not skipped, result.stdout[-3000:]
        assert PEER_RATIO[name] in result.stdout, result.stdout[-3000:]
    if name == "broadcast":  # python-socketio is optional: its row ran and was compared, or says why not
        if socketio_server.missing():
            assert f"skipped socketio: {socketio_server.missing()}" in result.stdout, result.stdout[-3000:]
        else:
            assert "longpoll serve --workers 1 / socketio" in result.stdout, result.stdout[-3000:]


def test_latency_quick_on_redis_with_statuses_published_to_redis():
    if not redis_server_path():
        pytest.skip("redis-server is not installed")
    result = subprocess.run([sys.executable, "-m", "bench.latency", "--quick", "--backends", "redis-publish"],
                            capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| redis-publish" in result.stdout
    assert not re.search(r"[1-9]\d* delivered twice", result.stdout), result.stdout[-3000:]
