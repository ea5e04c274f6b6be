"""What every benchmark shares: the machine header, servers and Redis in their own
process groups, RSS from /proc, percentiles and progress lines.

Servers are started with ``start_new_session=True`` and stopped by signalling
their own process group only: never a broad kill by name.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tests.procs import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


# -- the header ----------------------------------------------------------------

def meminfo_kb(field: str = "MemTotal") -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("CherryPy", "cheroot", "granian", "uvloop", "a2wsgi", "uvicorn", "python-socketio", "redis"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "redis-server not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\S+)", out)
    return f"redis-server {found.group(1)}" if found else out.strip()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def header(title: str, module: str) -> None:
    """Print the machine and the exact command line.

    Also makes SIGTERM (``timeout``, ``kill``) raise SystemExit, so that the
    ``finally`` blocks that stop the servers a benchmark started still run.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    command = shlex.join([Path(sys.executable).name, "-m", module, *sys.argv[1:]])
    load = os.getloadavg()
    print(f"== {title}")
    print(f"command: {command}")
    print(f"machine: {os.cpu_count()} cores ({cpu_model()}), {meminfo_kb() / 1024 / 1024:.1f} GB memory, "
          f"load average {load[0]:.2f} at start")
    print(f"python:  {platform.python_implementation()} {platform.python_version()} on {platform.system()} "
          f"{platform.release()}; {versions()}")
    print(f"date:    {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(flush=True)


# -- small helpers ---------------------------------------------------------------

def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def median(values: Sequence[float]) -> float:
    return percentile(sorted(values), 50)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MB"


def table(rows: list[list[str]], head: list[str]) -> str:
    """A Markdown table (readable as text too)."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


class Progress:
    """A line to stderr at most every ``every`` seconds."""

    def __init__(self, every: float = 3.0):
        self.every = every
        self._last = 0.0

    def __call__(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    t = os.times()
    return t.user + t.system


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return orjson.loads(response.read())


def post_json(url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 30) -> Any:
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return orjson.loads(response.read())


# -- /proc -------------------------------------------------------------------------

def children_of(pid: int) -> list[int]:
    """Every descendant of pid (by scanning /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def recv(pipe: Any, timeout: float, what: str) -> Any:
    """The next message a load-generator process sends; its own failure raised here."""
    if not pipe.poll(timeout):
        raise RuntimeError(f"{what} sent nothing for {timeout:.0f} s")
    message = pipe.recv()
    if isinstance(message, tuple) and message[0] == "error":
        raise RuntimeError(f"{what} failed: {message[1]}")
    return message


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- servers -------------------------------------------------------------------------

LOAD_ARGS = ("--max-sessions-per-address", "1000000")
"""Every load generator here is one client address; the per-address cap protects against exactly that."""


def threads_command(args: Sequence[str], threads: int = 1000) -> list[str]:
    """``longpoll serve``'s app on CherryPy's own threaded server (cheroot), as an embedder runs it
    (``longpoll serve`` itself runs granian)."""
    return [sys.executable, "-m", "bench.bare_server", "--port", "0", *args, "--threads", str(threads)]


class Server(ServerProcess):
    """``longpoll serve --port 0 ...`` (or any command printing "serving on URL") in its own process group.

    It inherits this process's open-file limit: call :func:`raise_nofile` first.
    """

    def __init__(self, args: Sequence[str] = (), *, command: Sequence[str] | None = None, name: str = "server",
                 env: dict[str, str] | None = None):
        self.command = list(command) if command else [sys.executable, "-m", "longpoll.server", "serve", "--port", "0",
                                                      *LOAD_ARGS, *args]
        self.log_path = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self._log = self.log_path.open("w")
        super().__init__(command=self.command, env=env, stderr=self._log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        assert self.url is not None
        return int(self.url.rsplit(":", 1)[1])

    def wait_ready(self, timeout: float = 60) -> str:
        """Wait for the "serving on" line, then for /healthz to answer."""
        if not self._ready.wait(timeout) or self.url is None:
            self.stop()
            raise RuntimeError(f"server did not start: {shlex.join(self.command)}\n{self.tail_log()}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                get_json(self.url + "/healthz", timeout=5)
                return self.url
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"server never answered /healthz\n{self.tail_log()}") from None
                time.sleep(0.1)

    @property
    def banner(self) -> str:
        """The server's own "... serving on URL (configuration)" line: which configuration ran."""
        return next((line.strip() for line in self.output if "serving on" in line), shlex.join(self.command))

    def tail_log(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        return [self.pid, *children_of(self.pid)]

    def worker_pids(self) -> list[int]:
        """The processes that answer requests: granian's workers, else the server itself."""
        return children_of(self.pid) or [self.pid]

    def rss_kb(self) -> int:
        """VmRSS summed over the server and its children (granian: its main process + workers)."""
        return sum(rss_kb(pid) for pid in self.pids())

    def cpu(self) -> float:
        return sum(process_cpu(pid) for pid in self.pids())

    def stats(self) -> dict[str, Any]:
        assert self.url is not None
        return get_json(self.url + "/stats")

    def held_polls(self) -> int:
        return self.stats()["held_polls"]

    # the demo's topics, as bench.nchan.Nchan's channels: a long-poll and a publish releasing it
    hold_path = "/topics/{channel}?timeout={timeout:g}"
    publish_path = "/topics/{channel}"
    ready_path = "/primes?limit=100&max=1"
    handshake = "session"  # a held poll may continue a session made with timeout=0 (bench.broadcast does)

    def publish(self, channel: str, body: bytes) -> int:
        """POST a JSON item to a topic; the status (201)."""
        assert self.url is not None
        request = urllib.request.Request(self.url + self.publish_path.format(channel=channel), data=body,
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout / 2)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        else:  # the group may outlive its leader (a granian worker)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is None:
            self.log_path.unlink(missing_ok=True)
        else:
            print(f"(server log kept at {self.log_path})", file=sys.stderr)


def start_row(row: Any, stack: contextlib.ExitStack) -> bool:
    """Start a benchmark row's server in ``stack`` and wait until it serves (its ``server`` and ``banner``
    set); False, saying why, for a row that is skipped."""
    if row.skip:
        print(f"skipped {row.name}: {row.skip}")
        return False
    row.server = stack.enter_context(row.start())
    if isinstance(row.server, Server):
        row.server.wait_ready()
    row.banner = row.server.banner
    return True


class AppServer(Server):
    """``bench.asgi_app``: an app's own ``json_yield`` endpoint through ``longpoll.asgi``, on granian or uvicorn."""

    hold_path = "/news?topic={channel}&timeout={timeout:g}"
    publish_path = "/publish?topic={channel}"
    ready_path = "/news?topic=ready&timeout=0"

    def __init__(self, server: str = "granian", name: str = "asgi-app"):
        super().__init__(command=[sys.executable, "-m", "bench.asgi_app", "--server", server], name=name)


class SocketIOServer(Server):
    """``bench.socketio_server``: python-socketio on uvicorn, its clients on Engine.IO long-polling."""

    hold_path = "/socket.io/?EIO=4&transport=polling&topic={channel}"
    publish_path = "/publish?topic={channel}"
    handshake = "engineio"

    def __init__(self, name: str = "socketio"):
        super().__init__(command=[sys.executable, "-m", "bench.socketio_server"], name=name)


class RedisServer:
    """A private redis-server on a free port (never the system one), no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
