"""Schemathesis against `longpoll serve` and its own /openapi.json: no 5xx, every
answer in its documented shape (status, content type, body schema).

The run size comes from $LONGPOLL_FUZZ_EXAMPLES (examples per operation and
phase; 15 by default, which CI runs). The full run of the hardening note:
LONGPOLL_FUZZ_EXAMPLES=600 pytest tests/test_fuzz.py -s
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.procs import ROOT, ServerProcess
from tests.redisproc import RedisProcess, redis_server_path

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

EXAMPLES = int(os.environ.get("LONGPOLL_FUZZ_EXAMPLES", "15"))
CONFIG = ROOT / "tests" / "fuzz" / "schemathesis.toml"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_fuzzing_finds_no_server_errors_and_no_undocumented_answers(backend, tmp_path):
    redis_proc = None
    args = ["--max-timeout", "0.2", "--max-polls-per-second", "100000", "--max-sessions", "1000000",
            "--max-sessions-per-identifier", "1000000"]
    if backend == "redis":
        if not redis_server_path():
            if os.environ.get("CI"):
                pytest.fail("redis-server is not installed (CI must install it: see .ci/run)")
            pytest.skip("redis-server is not installed")
        redis_proc = RedisProcess()
        args += ["--redis", redis_proc.url]
    try:
        with ServerProcess(*args) as server:
            url = server.wait_ready()
            token = httpx.post(url + "/users", data={"login": "fuzzer"}, timeout=10).json()["token"]
            result = subprocess.run(
                [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run",
                 f"{url}/openapi.json", "--max-examples", str(EXAMPLES), "--seed", "20261123"],
                capture_output=True, text=True, timeout=1800, cwd=tmp_path,
                env={**os.environ, "LONGPOLL_FUZZ_TOKEN": token, "NO_COLOR": "1"})
            server_log = "".join(server.output)
        generated = re.search(r"(\d+) generated", result.stdout)
        print(f"\nschemathesis on the {backend} backend: {generated.group(0) if generated else '?'}, "
              f"exit {result.returncode}")
        assert result.returncode == 0, result.stdout[-5000:]
        assert generated and int(generated.group(1)) > 0
        assert "Traceback" not in server_log, server_log[-3000:]
    finally:
        if redis_proc is not None:
            redis_proc.stop()
