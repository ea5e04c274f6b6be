"""Starting real server processes for tests, and stopping them whatever happens."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"serving on (http://\S+?)/? ")


class ServerProcess:
    """``longpoll serve`` (or any command printing "serving on URL") in a child process."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, command: list[str] | None = None,
                 stderr: Any = subprocess.STDOUT, cwd: Path = ROOT):
        cmd = command or [sys.executable, "-m", "longpoll.server", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                     stderr=stderr, text=True, start_new_session=True)
        self.url: str | None = None
        self.output: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            found = SERVING.search(line)
            if found and self.url is None:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 30) -> str:
        if not self._ready.wait(timeout) or self.url is None:
            self.stop()
            raise AssertionError("server did not start:\n" + "".join(self.output))
        return self.url

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash would be."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()  # what it said tells why (pytest shows it with a failure)
                said = "".join(self.output)[-5000:]
                print(f"{self.proc.args} did not stop in {timeout} s; killed. It said:\n{said}", file=sys.stderr)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
