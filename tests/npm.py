"""Tools and npm packages the JavaScript tests need, found or installed at test time.

Packages (a JavaScript parser, several jQuery versions) are installed by npm
into a cache outside the repository, once per set of exact versions, and
moved into place only when complete, so parallel runs never see half an
install. Nothing downloaded is committed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def unavailable(message: str) -> None:
    """Skip; but under CI, where everything must be installed (.ci/run), fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must provide it: see .ci/run)")
    pytest.skip(message)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed")
    return path


def cache_dir() -> Path:
    """$LONGPOLL_NPM_CACHE, else ~/.cache/longpoll-tests/npm (XDG_CACHE_HOME honoured)."""
    if os.environ.get("LONGPOLL_NPM_CACHE"):
        return Path(os.environ["LONGPOLL_NPM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "longpoll-tests" / "npm"


def npm_modules(*specs: str) -> Path:
    """A node_modules directory holding exactly these packages (npm specs, aliases allowed:
    ``jquery1@npm:jquery@1.12.4``)."""
    npm = require_tool("npm")
    cache = cache_dir()
    done = cache / hashlib.sha256("\n".join(sorted(specs)).encode()).hexdigest()[:16]
    if (done / "node_modules").is_dir():
        return done / "node_modules"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="installing-", dir=cache))
    try:
        (work / "package.json").write_text('{"private": true}\n')
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--ignore-scripts",
                                 "--loglevel=error", *specs], cwd=work, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            unavailable(f"npm install {' '.join(specs)} failed: {result.stderr[-2000:]}")
        try:
            work.rename(done)
        except OSError:  # another run finished the same install first
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done / "node_modules"
