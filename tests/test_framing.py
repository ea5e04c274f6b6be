"""Broken and slow HTTP against ``longpoll serve`` as installed: raw sockets, real server process.

Every answer the app makes is JSON (PROTOCOL.md), a client that sends too
slowly or too little gets an answer or is let go, and none of it costs more
than one log line.  Requests that granian (hyper, underneath) refuses before
the app sees them are answered by hyper with a bare status and no body, which
nothing in granian or hyper lets a program change: they are held here to that,
so that a change in granian shows.
"""

from __future__ import annotations

import json
import resource
import socket
import time

import pytest

from tests.procs import ServerProcess

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

READ_TIMEOUT = 2


@pytest.fixture(scope="module")
def served():
    with ServerProcess("--read-timeout", str(READ_TIMEOUT), "--max-sessions-per-address", "100000") as server:
        url = server.wait_ready()
        host, port = url.split("//")[1].split(":")
        yield server, (host, int(port))


def exchange(address: tuple[str, int], data: bytes, wait: float = 15) -> tuple[int | None, dict[str, str], bytes]:
    """Send raw bytes; read until the server closes or answers in full: (status, headers, body)."""
    with socket.create_connection(address, timeout=wait) as conn:
        conn.sendall(data)
        raw = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                raw += chunk
                head, sep, body = raw.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if sep and length is not None and len(body) >= length:
                    break
        except TimeoutError:
            pass
    if not raw:
        return None, {}, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    return int(lines[0].split()[1]), headers, body


BROKEN = {  # answered by the app: JSON
    "bad chunk size": b"POST /primes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "bad chunk size, a continuation": b"POST /statuses/filter.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                      b"\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "truncated multipart": b"POST /primes HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
                           b"Content-Length: 40\r\nConnection: close\r\n\r\n--XX\r\nContent-Disposition: form-data; "
                           b"name=\"li",
    "multipart without a boundary": b"POST /primes HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\n"
                                    b"Content-Length: 4\r\nConnection: close\r\n\r\nabcd",
    "a body over 1 MiB": b"POST /primes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2000000\r\n\r\n{\"limit\": 1}",
    "non-UTF-8 query": b"GET /statuses/sample.json?identifier=%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "a request line of 64 KiB": b"GET /statuses/sample.json?identifier=x&" + b"a" * 65_000 + b"=1 HTTP/1.1\r\n"
                                b"Host: x\r\nConnection: close\r\n\r\n",
}

REFUSED_BY_GRANIAN = {  # hyper's own answers: (status, body empty, connection closed)
    "not HTTP": (b"GARBAGE\r\n\r\n", 400),
    "bad version": (b"GET /primes HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    "bad Content-Length": (b"POST /primes HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    "negative Content-Length": (b"POST /primes HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    "raw bytes in the request line": (b"GET /pri\xffmes?limit=\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                      400),
    "a request line too long": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too many headers": (b"GET /primes HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
                         431),
    "a head too large": (b"GET /primes HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 8000) for i in range(50))
                         + b"\r\n", 431),
    "a header without a colon": (b"GET /primes HTTP/1.1\r\nHost x\r\n\r\n", 400),
}


def quiet_log(server: ServerProcess, logged: int) -> None:
    """No traceback, and at most one log line, for what a client sent (checked on the next request's heels:
    the server logs before it answers another)."""
    exchange(server_address(server), b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    new = server.output[logged:]
    assert not any("Traceback" in line for line in new), "".join(new)
    assert len([line for line in new if " WARNING " in line or " ERROR " in line]) <= 1, "".join(new)


def server_address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.split("//")[1].rstrip("/").split(":")  # type: ignore[union-attr]
    return host, int(port)


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_framing_is_answered_in_json_without_a_traceback(served, name):
    server, address = served
    logged = len(server.output)
    status, headers, body = exchange(address, BROKEN[name])
    assert status is not None and 400 <= status < 500 or name == "a request line of 64 KiB", (status, body[:200])
    assert headers.get("content-type") == "application/json", headers
    answer = json.loads(body)
    if status != 200:
        assert set(answer) >= {"error", "message"} and answer["error"] != "internal"
    quiet_log(server, logged)


@pytest.mark.parametrize("name", list(REFUSED_BY_GRANIAN))
def test_what_granian_refuses_itself_is_a_bare_status_and_the_server_goes_on(served, name):
    server, address = served
    logged = len(server.output)
    sent, wanted = REFUSED_BY_GRANIAN[name]
    status, headers, body = exchange(address, sent)
    assert (status, body) == (wanted, b""), (status, headers, body[:200])
    quiet_log(server, logged)


@pytest.mark.parametrize("declared,sent", [(1000, b"{"), (100, b"{}")])
def test_a_body_shorter_than_its_length_is_408_within_the_read_timeout(served, declared, sent):
    _, address = served
    began = time.monotonic()
    status, headers, body = exchange(address, b"POST /primes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n" % declared + sent, wait=READ_TIMEOUT + 10)
    assert status == 408 and json.loads(body)["error"] == "request_timeout", body
    assert time.monotonic() - began < READ_TIMEOUT + 5


def test_a_body_declared_too_large_is_413_at_once(served):
    _, address = served
    status, _, body = exchange(address, b"POST /primes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 100000000\r\n\r\n{}", wait=READ_TIMEOUT + 10)
    assert status == 413 and json.loads(body)["error"] == "too_large"


def test_a_chunked_form_body_is_read(served):
    _, address = served
    status, _, body = exchange(address, b"POST /primes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n"
                               b"8\r\nlimit=10\r\n0\r\n\r\n")
    assert status == 200 and json.loads(body)["items"] == [2, 3, 5, 7]


def test_a_poll_is_answered_while_2000_slow_clients_hold_partial_requests(served):
    _, address = served
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 5000)), hard))
    slow = []
    try:
        for _ in range(2000):  # slowloris: a request's start, and then nothing
            conn = socket.create_connection(address, timeout=10)
            conn.sendall(b"GET /primes?limit=10 HTTP/1.1\r\nHost: x\r\n")
            slow.append(conn)
        began = time.monotonic()
        status, _, body = exchange(address, b"GET /primes?limit=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   wait=5)
        took = time.monotonic() - began
        print(f"\na poll with 2,000 slow clients waiting: {took * 1000:.0f} ms")
        assert status == 200 and json.loads(body)["items"] == [2, 3, 5, 7]
        for conn in slow[:50]:  # and the slow ones are let go after the read timeout (granian closes them)
            conn.settimeout(READ_TIMEOUT + 10)
            assert conn.recv(65536) == b""
    finally:
        for conn in slow:
            conn.close()
