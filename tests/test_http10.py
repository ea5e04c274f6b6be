"""HTTP/1.0 on every front: what nginx's default proxy, ``ab``, health checkers and old clients speak.

granian says ``http_version "1"`` for HTTP/1.0, which a2wsgi passed on as
``SERVER_PROTOCOL = "HTTP/1"``, and CherryPy answered every such request with
a 500.  These send raw HTTP/1.0 to each front (CherryPy on cheroot,
``FastPolls``, ``longpoll.asgi`` on uvicorn, ``longpoll serve`` on granian)
and to ``longpoll serve`` behind nginx with nothing but ``proxy_pass``; the
answers are JSON, framed for HTTP/1.0 (no chunked framing), and say
``Connection: close`` unless the client asked to keep the connection.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest_support import wait_until
from tests.nginx import Nginx
from tests.procs import ServerProcess
from tests.streams_helpers import unique


def exchange(address: tuple[str, int], data: bytes, until: bytes | None = None,
             wait: float = 30) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes; read until the server closes (or, with ``until``, until the body holds it): the status
    line, the headers and the body."""
    with socket.create_connection(address, timeout=wait) as conn:
        conn.sendall(data)
        raw = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            raw += chunk
            if until is not None and until in raw.partition(b"\r\n\r\n")[2]:
                break
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    return lines[0], headers, body


def request(method: str, target: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.0\r\nHost: x\r\n{headers}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def answer(address: tuple[str, int], data: bytes, status: int) -> dict:
    """A whole HTTP/1.0 answer: its status, JSON, a body as long as it says, and the connection closed."""
    line, headers, body = exchange(address, data)
    assert line.split()[1] == str(status), (line, headers, body[:300])
    assert headers.get("content-type") == "application/json", headers
    assert "transfer-encoding" not in headers, headers  # HTTP/1.0 has no chunked framing
    assert headers.get("connection", "close").lower() == "close", headers
    assert int(headers.get("content-length", len(body))) == len(body)
    return json.loads(body)


def held_continuation(address: tuple[str, int], prefix: str, held: callable, publish: callable) -> None:
    """A poll held over HTTP/1.0 is released by a publish, and answers with the item."""
    topic = unique("old")
    first = answer(address, request("GET", f"{prefix}/topics/{topic}?timeout=0"), 200)
    got: dict[str, object] = {}

    def poll() -> None:
        got["answer"] = answer(address, request(
            "GET", f"{prefix}/topics/{topic}?key={first['key']}&cursor={first['cursor']}&timeout=30"), 200)

    before = held()
    polling = threading.Thread(target=poll)
    polling.start()
    wait_until(lambda: held() > before, timeout=20, what="the HTTP/1.0 poll to be held")
    publish(topic, {"n": 1})
    polling.join(35)
    assert got["answer"]["items"] == [{"n": 1}], got  # type: ignore[index]


def the_calls(address: tuple[str, int], prefix: str, held: callable) -> None:
    assert answer(address, request("GET", f"{prefix}/healthz"), 200)["status"] == "ok"
    first = answer(address, request("GET", f"{prefix}/primes?limit=20&max=3"), 200)
    assert first["items"] == [2, 3, 5]
    again = answer(address, request("GET", f"{prefix}/primes?key={first['key']}&cursor={first['cursor']}&max=3"), 200)
    assert again["items"] == [7, 11, 13]
    published = answer(address, request("POST", f"{prefix}/topics/{unique('x')}", b'{"hello": "world"}'), 201)
    assert "position" in published
    assert answer(address, request("GET", f"{prefix}/no/such/path"), 404)["error"] == "not_found"
    line, _, body = exchange(address, request("GET", f"{prefix}/healthz", headers="Connection: keep-alive\r\n"),
                             until=b"}")  # the server may keep the connection, or say it closes it (uvicorn)
    assert line.split()[1] == "200" and json.loads(body) == {"status": "ok"}, (line, body)
    line, headers, body = exchange(address, request("GET", f"{prefix}/topics/{unique('sse')}?timeout=1",
                                                    headers="Accept: text/event-stream\r\n"), until=b"data: ")
    assert line.split()[1] == "200" and headers["content-type"].startswith("text/event-stream"), (line, headers)
    assert "transfer-encoding" not in headers and body.startswith(b"retry: "), (headers, body[:100])


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    return host, int(port)


@pytest.mark.parametrize("front", ["cherrypy", "fastpath", "asgi"])
def test_http10_on_each_front_in_process(server, front):
    if front == "asgi" and server["asgi_url"] is None:
        pytest.skip("uvicorn is not installed")
    address = _address(server[{"fastpath": "fast_url", "asgi": "asgi_url"}.get(front, "url")])

    def held() -> int:
        return httpx.get(server["url"] + "/mem/stats", timeout=10).json()["held_polls"]

    the_calls(address, "/mem", held)
    broker = server["roots"]["mem"].topics.__self__.broker
    held_continuation(address, "/mem", held, broker.publish)


@pytest.fixture(scope="module")
def serve() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        process.wait_ready()
        yield process


@pytest.mark.slow
def test_http10_on_longpoll_serve(serve):
    address = _address(serve.url)
    logged = len(serve.output)

    def held() -> int:
        return httpx.get(serve.url + "/stats", timeout=10).json()["held_polls"]

    the_calls(address, "", held)
    held_continuation(address, "", held, lambda topic, item: answer(
        address, request("POST", f"/topics/{topic}", json.dumps(item).encode()), 201))
    assert not any("Traceback" in line for line in serve.output[logged:]), "".join(serve.output[logged:])


@pytest.mark.slow
def test_nginx_default_proxy_in_front_of_longpoll_serve(serve):
    """``location / { proxy_pass ...; }`` and nothing else: nginx speaks HTTP/1.0 to the server and buffers
    what it answers.  A first poll, a publish and a held continuation get through."""
    with Nginx([serve.url.split("//")[1].rstrip("/")], default_proxy=True) as nginx, \
            httpx.Client(base_url=nginx.url, timeout=40) as client:
        topic = unique("nginx")
        first = client.get(f"/topics/{topic}", params={"timeout": 0})
        assert first.status_code == 200, first.text
        key, cursor = first.json()["key"], first.json()["cursor"]
        got: dict[str, httpx.Response] = {}
        polling = threading.Thread(target=lambda: got.setdefault("poll", client.get(
            f"/topics/{topic}", params={"key": key, "cursor": cursor, "timeout": 30})))
        before = httpx.get(serve.url + "/stats", timeout=10).json()["held_polls"]
        polling.start()
        wait_until(lambda: httpx.get(serve.url + "/stats", timeout=10).json()["held_polls"] > before, timeout=20,
                   what="the proxied poll to be held")
        published = client.post(f"/topics/{topic}", json={"via": "nginx"})
        assert published.status_code == 201, published.text
        polling.join(35)
        assert got["poll"].status_code == 200 and got["poll"].json()["items"] == [{"via": "nginx"}], got
        assert client.get("/healthz").json() == {"status": "ok"}
