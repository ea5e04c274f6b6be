"""Each install, in a fresh virtual environment, runs what it is for.

- ``pip install longpoll``: the library alone. The README's embedding example
  runs and answers polls; the server's dependencies (httpx, granian, a2wsgi,
  prometheus_client) are not there, and ``longpoll serve`` says what to install.
- ``pip install 'longpoll[server]'``: ``longpoll serve`` starts on granian
  (a server's dependency that only its workers import once failed exactly so).
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from tests.conftest_support import free_port, wait_until
from tests.procs import ROOT, ServerProcess
from tests.test_embedding import readme_block


def fresh_venv(where: Path, requirement: str) -> Path:
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             requirement], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"pip install {requirement} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return python


@pytest.mark.timeout(1200)
def test_the_library_alone_runs_the_readme_example(tmp_path):
    python = fresh_venv(tmp_path / "venv", str(ROOT))
    product = ("httpx", "granian", "a2wsgi", "prometheus_client")
    missing = subprocess.run([str(python), "-c", f"import importlib.util as u; print([m for m in {product!r} "
                              "if u.find_spec(m)])"], capture_output=True, text=True, timeout=60)
    assert missing.stdout.strip() == "[]", missing.stdout
    refused = subprocess.run([str(python), "-m", "longpoll.server", "serve"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert refused.returncode != 0 and "longpoll[server]" in refused.stderr and "Traceback" not in refused.stderr
    (tmp_path / "news.py").write_text(readme_block("<!-- embed-example -->"))
    port = free_port()
    with ServerProcess(command=[str(python), str(tmp_path / "news.py")], env={"PORT": str(port)}, cwd=tmp_path):
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(base + "/primes", params={"limit": 10}, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=60, what="the example to answer")
        assert httpx.get(base + "/primes", params={"limit": 10}, timeout=5).json()["items"] == [2, 3, 5, 7]


@pytest.mark.timeout(1200)
def test_the_server_extra_runs_longpoll_serve(tmp_path):
    python = fresh_venv(tmp_path / "venv", f"{ROOT}[server]")
    longpoll = python.with_name("longpoll")  # the console script, importing the installed package
    with ServerProcess(command=[str(longpoll), "serve", "--port", "0"], cwd=tmp_path) as server:
        url = server.wait_ready(timeout=60)
        assert httpx.get(url + "/healthz", timeout=10).json() == {"status": "ok"}
        page = httpx.get(url + "/", timeout=10)  # the demo page and the client, from the installed package data
        assert page.status_code == 200 and "/web/demo/demo.js" in page.text
        for path in ("/web/demo/demo.js", "/web/demo/demo.css", "/web/demo/world.svg", "/web/longpoll.mjs",
                     "/web/longpoll.js", "/web/jquery.longpoll.js"):
            assert httpx.get(url + path, timeout=10).status_code == 200, path
        assert "granian, 1 worker" in "".join(server.output)
        assert "Traceback" not in "".join(server.output)


def test_the_console_script_is_the_cli():
    result = subprocess.run([sys.executable, "-m", "longpoll.server", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.startswith("longpoll ")
