"""A real nginx in front of longpoll: its own config in a temporary directory, on a free port, as this user.

The ``http`` block is docs/deploying.md's "nginx in front" config, the one that
matters for long-polls and streams (``proxy_read_timeout`` above the
longest hold, ``proxy_buffering off`` so each event passes at once,
keep-alive to the upstreams); the test that uses it holds it to that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest_support import free_port, wait_until

NGINX = "/usr/sbin/nginx"

PROXY = """\
upstream longpoll {{
{servers}
    keepalive 64;                   # reuse connections to the servers: a poll is one more request on one
}}
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://longpoll;
        proxy_http_version 1.1;     # keep-alive to the upstreams needs HTTP/1.1 ...
        proxy_set_header Connection "";  # ... and no "Connection: close" passed on
        proxy_read_timeout 75s;     # above the longest hold (timeout <= 60 s) and a stream's heartbeat (15 s)
        proxy_buffering off;        # SSE and JSON lines: each event goes out as it comes
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;  # with longpoll serve --trust-proxy
    }}
}}
"""

DEFAULT_PROXY = """\
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://{servers};  # nothing else: nginx's defaults (HTTP/1.0 upstream, buffering on)
    }}
}}
"""
"""What someone who never read the docs writes: every default of nginx's proxy."""

CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{proxy}}}
"""


class Nginx:
    """nginx proxying round-robin (no sticky sessions) to the given upstream addresses."""

    def __init__(self, upstreams: list[str], *, default_proxy: bool = False, proxy: str | None = None):
        """``default_proxy``: one upstream, and nothing but ``proxy_pass`` (:data:`DEFAULT_PROXY`); ``proxy``:
        an ``http``-level config of the test's own (upstreams, maps, a server), with ``{port}`` where it
        listens and ``{upstream0}``, ``{upstream1}``... for the given addresses."""
        if not Path(NGINX).exists():
            if os.environ.get("CI"):
                pytest.fail("nginx is not installed (CI must install it: see .ci/run)")
            pytest.skip("nginx is not installed (apt-get install -y nginx)")
        self.dir = tempfile.mkdtemp(prefix="longpoll-nginx-")
        self.port = free_port()
        if proxy is not None:
            proxy = proxy.replace("{port}", str(self.port))
            for index, upstream in enumerate(upstreams):
                proxy = proxy.replace(f"{{upstream{index}}}", upstream)
        elif default_proxy:
            (upstream,) = upstreams
            proxy = DEFAULT_PROXY.format(port=self.port, servers=upstream)
        else:
            proxy = PROXY.format(port=self.port, servers="\n".join(f"    server {u};" for u in upstreams))
        config = CONFIG.format(dir=self.dir, proxy="\n".join("    " + line for line in proxy.splitlines()) + "\n",
                               user="user root;" if os.geteuid() == 0 else "")
        Path(self.dir, "nginx.conf").write_text(config)
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", f"{self.dir}/nginx.conf"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        import socket

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                assert self.proc.poll() is None, Path(self.dir, "error.log").read_text()
                return False

        wait_until(listening, timeout=15, what="nginx to listen")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
