"""Each install, in a fresh virtual environment, runs what it is for.

- ``pip install longpoll``: the library alone. The README's embedding example
  runs and answers polls; the server's dependencies (httpx, granian, a2wsgi,
  prometheus_client) are not there, and ``longpoll serve`` says what to install.
- ``pip install 'longpoll[server]'``: ``longpoll serve`` starts on granian
  (a server's dependency that only its workers import once failed exactly so).
- ``python -m build``: an sdist and a wheel that ``twine check --strict``
  passes, the wheel carrying the browser client, py.typed and the licence.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

import longpoll
from tests.conftest_support import free_port, wait_until
from tests.procs import ROOT, ServerProcess
from tests.test_embedding import readme_block

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


def fresh_venv(where: Path, requirement: str) -> Path:
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             requirement], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"pip install {requirement} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return python


TINY_APP = """
import os

import cherrypy

import longpoll

cherrypy.config.update({"server.socket_port": int(os.environ["PORT"]), "engine.autoreload.on": False})
cherrypy.tree.mount(None, "/longpoll", longpoll.web_config())
cherrypy.engine.start()
cherrypy.engine.block()
"""


@pytest.fixture(scope="module")
def library_venv(tmp_path_factory) -> Path:
    """The library alone, installed from the checkout the plain way (not editable): what ``pip install longpoll``
    gives, with nothing of the checkout on its path."""
    return fresh_venv(tmp_path_factory.mktemp("library") / "venv", str(ROOT))


def serving(base: str, path: str) -> bool:
    try:
        return httpx.get(base + path, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.timeout(1200)
def test_the_library_alone_runs_the_readme_example(library_venv, tmp_path):
    python = library_venv
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
        wait_until(lambda: serving(base, "/primes?limit=10"), timeout=60, what="the example to answer")
        assert httpx.get(base + "/primes", params={"limit": 10}, timeout=5).json()["items"] == [2, 3, 5, 7]


@pytest.mark.timeout(1200)
def test_the_installed_library_serves_the_browser_client_from_its_package_data(library_venv, tmp_path):
    """The client is found in site-packages through importlib.resources: not beside a checkout, not in share/."""
    where = subprocess.run([str(library_venv), "-c", "import longpoll; print(longpoll.web_dir())"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    web = Path(where.stdout.strip())
    assert "site-packages" in web.parts and ROOT not in web.parents, where.stdout + where.stderr
    assert sorted(p.name for p in web.iterdir()) == ["jquery.longpoll.js", "longpoll.js", "longpoll.mjs"]
    (tmp_path / "app.py").write_text(TINY_APP)
    port = free_port()
    with ServerProcess(command=[str(library_venv), str(tmp_path / "app.py")], env={"PORT": str(port)}, cwd=tmp_path):
        base = f"http://127.0.0.1:{port}/longpoll"
        wait_until(lambda: serving(base, "/longpoll.js"), timeout=60, what="the app to serve the client")
        for name in ("longpoll.js", "longpoll.mjs", "jquery.longpoll.js"):
            assert httpx.get(f"{base}/{name}", timeout=5).content == (web / name).read_bytes(), name
        assert httpx.get(f"{base}/index.html", timeout=5).status_code == 404  # the demo page is the server's


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_sdist_and_wheel_build_and_pass_twine_check(tmp_path):
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path), str(ROOT)], capture_output=True,
                           text=True, timeout=800)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,), (sdist,) = tmp_path.glob("*.whl"), tmp_path.glob("*.tar.gz")
    release = f"longpoll-{longpoll.__version__}"  # the one version, read by the build from the package
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and checked.stdout.count("PASSED") == 2, checked.stdout + checked.stderr
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("longpoll/py.typed", "longpoll/web/longpoll.js", "longpoll/web/longpoll.mjs",
                    "longpoll/web/jquery.longpoll.js", "longpoll/server/demo_page/index.html",
                    f"{release}.dist-info/licenses/LICENSE"):
        assert shipped in names, shipped
    assert not [n for n in names if "/src/" in n or n.startswith(("web/", "tests/")) or ".data/" in n]
    assert "setup.py" not in names  # the shim builds the package; it is not a module of it
    metadata = zipfile.ZipFile(wheel).read(f"{release}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata
    prometheus = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: prometheus_client")]
    assert prometheus == ['Requires-Dist: prometheus_client>=0.17; extra == "server"']  # the product's only
    with tarfile.open(sdist) as archive:
        members = set(archive.getnames())
    assert {f"{release}/LICENSE", f"{release}/pyproject.toml", f"{release}/longpoll/web/longpoll.js"} <= members


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


def test_setup_py_is_a_shim_that_reads_the_one_version():
    """``python setup.py --version``, as old tools ask it, says what pyproject.toml (and the package) say."""
    result = subprocess.run([sys.executable, "setup.py", "--version"], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == longpoll.__version__
    assert "setup(" in (ROOT / "setup.py").read_text() and "version=" not in (ROOT / "setup.py").read_text()
