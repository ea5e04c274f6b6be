"""A real redis-server that the tests start on a free port (and stop), never a shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest
import redis

from tests.conftest_support import free_port


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def require_redis_server() -> str:
    """The redis-server binary; skip without it, except under CI where missing it is a failure."""
    path = redis_server_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (CI must install it: see .ci/run)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return path


class RedisProcess:
    """redis-server in a temporary directory; ``durable`` keeps an fsync-always AOF across restarts."""

    def __init__(self, durable: bool = False, port: int | None = None, args: tuple[str, ...] = ()):
        self.binary = require_redis_server()
        self.args = args
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="longpoll-redis-")
        self.durable = durable
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        args += self.args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
