"""Nchan (nginx + its long-poll module), the reference server the benchmarks measure beside longpoll.

Nginx and the module come from the system's packages (``apt-get install -y
nginx libnginx-mod-nchan``); :func:`missing` says what is absent and how to
install it, so that a benchmark can print that and skip its Nchan row.

:class:`Nchan` writes its own nginx config into a temporary directory and
runs its own nginx there, in the foreground, in its own process group, on a
free port, as the current user: never the machine's nginx or its config.

- ``GET /sub?id=C``: a long-poll subscriber of channel C
  (``nchan_subscriber longpoll``).  A request without ``If-Modified-Since``
  / ``If-None-Match`` gets the oldest message queued on C at once, or waits
  for the next one (up to ``timeout``, default 60 s, as longpoll's ``timeout=60``).
- ``POST /pub?id=C``: publish the body to C (``nchan_publisher``).
- ``GET /nchan_status``: ``nchan_stub_status`` (``subscribers: N`` is the
  count of held polls).

One worker (``worker_processes 1``), as one longpoll process.  Nginx closes
a keep-alive connection after ``keepalive_requests`` (1,000 by default);
this config lifts it, as granian and cheroot have no such limit.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .common import children_of, free_port, process_cpu, raise_nofile, rss_kb

INSTALL = "apt-get install -y nginx libnginx-mod-nchan"
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/local/nginx/modules")

CONFIG = """\
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
load_module {module};
{user}
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog={backlog};
        location = /sub {{
            nchan_subscriber longpoll;
            nchan_channel_id $arg_id;
            nchan_subscriber_timeout {timeout}s;
        }}
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_id;
        }}
        location = /nchan_status {{
            nchan_stub_status;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def module_path() -> str | None:
    for folder in MODULE_DIRS:
        path = Path(folder) / "ngx_nchan_module.so"
        if path.exists():
            return str(path)
    return None


def missing() -> str | None:
    """Why Nchan cannot run here, with the command that installs it; None when it can."""
    absent = [name for name, found in (("nginx", nginx_binary()), ("the nchan module", module_path())) if not found]
    if not absent:
        return None
    return f"{' and '.join(absent)} not installed: {INSTALL}"


def versions() -> str:
    """``nginx 1.22.1 + nchan 1.3.6`` as far as the packages tell."""
    found = []
    for package, name in (("nginx", "nginx"), ("libnginx-mod-nchan", "nchan")):
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        version = re.sub(r"^\d+:", "", out).split("-")[0].split("+")[0]
        found.append(f"{name} {version}" if version else name)
    return " + ".join(found)


class Nchan:
    """Its own nginx with the Nchan module on a free port; stopped (and its directory removed) by :meth:`stop`."""

    hold_path = "/sub?id={channel}"  # as longpoll's Server.hold_path; the timeout is the config's

    def __init__(self, connections: int = 20_000, workers: int = 1, timeout: float = 60):
        binary, module = nginx_binary(), module_path()
        if binary is None or module is None:
            raise RuntimeError(missing())
        nofile = raise_nofile()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-nchan-")
        user = ""
        if os.geteuid() == 0:  # else the workers would switch to "nobody"
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        conf = Path(self.dir) / "nginx.conf"
        conf.write_text(CONFIG.format(workers=workers, nofile=nofile, dir=self.dir, module=module, user=user,
                                      connections=min(connections, nofile - 100), port=self.port, backlog=4096,
                                      timeout=max(1, round(timeout))))
        self.command = [binary, "-p", self.dir, "-c", str(conf), "-e", f"{self.dir}/error.log"]
        self.banner = (f"{versions()}: nginx serving on http://127.0.0.1:{self.port}/ ({workers} worker, "
                       f"nchan_subscriber longpoll)")
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.status()
                if self.worker_pids() != [self.proc.pid]:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"nginx did not start: {' '.join(self.command)}\n{self.tail_log()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail_log(self, lines: int = 20) -> str:
        path = Path(self.dir) / "error.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def status(self) -> dict[str, int]:
        """``nchan_stub_status`` as a dict (``subscribers``, ``channels``, ``stored messages``, ...)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /nchan_status HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise OSError(f"nchan_status answered {head[:40]!r}")
        found = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(":")
            if value.strip().isdigit():
                found[name.strip()] = int(value)
        return found

    def held_polls(self) -> int:
        return self.status().get("subscribers", 0)

    def publish(self, channel: str, body: bytes) -> int:
        """POST a message to a channel; the status (201: subscribers got it, 202: queued for later ones)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(f"POST /pub?id={channel} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            return int(s.recv(65536)[9:12])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.proc.pid, *children_of(self.proc.pid)]

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid) or [self.proc.pid]

    def rss_kb(self) -> int:
        """VmRSS of the master and its workers (Nchan's shared memory shows in the workers that touch it)."""
        return sum(rss_kb(pid) for pid in self.pids())

    def cpu(self) -> float:
        return sum(process_cpu(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # nginx's fast shutdown
                self.proc.wait(10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:  # workers left behind by a master that died
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nchan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
