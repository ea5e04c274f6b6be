"""Streams whose clients never read: what the process holds for them is bounded (``longpoll/budget.py``),
nothing is written into a connection known to be closed, and ``items_delivered`` counts what connections
took.  Against ``longpoll serve`` (granian, one worker) and raw sockets that never ``recv``."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest_support import wait_until
from tests.procs import ServerProcess

STREAMS = 100
ITEMS = 1500
PAD = "x" * 8000  # an item is about 8 KB of JSON (the demo's /topics allow 8192 bytes)
RCVBUF = 4096


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        found = re.search(r"VmRSS:\s+(\d+) kB", status.read())
    assert found is not None
    return int(found.group(1)) * 1024


def worker(server: ServerProcess) -> int:
    """granian's worker process (the one that serves), or the server itself."""
    pid = server.proc.pid
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    return int(children[0]) if children else pid


def kernel_send_buffer() -> int:
    """The most the kernel lets a socket's send buffer grow to (tcp_wmem's maximum)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
        return int(wmem.read().split()[2])


def never_reading(url: str, path: str) -> socket.socket:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def quiet(client: httpx.Client, name: str, timeout: float = 20.0) -> dict:
    """The server's stats once ``name`` stopped changing for half a second (bounded): the streams sent what
    their connections would take."""
    deadline = time.monotonic() + timeout
    last = client.get("/stats").json()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = client.get("/stats").json()
        if now[name] != last[name]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            return now
    raise AssertionError(f"{name} kept changing for {timeout} s")


@pytest.fixture
def serve() -> Iterator[tuple[ServerProcess, str, httpx.Client]]:
    def start(*args: str) -> tuple[ServerProcess, str, httpx.Client]:
        server = ServerProcess("--workers", "1", *args)
        started.append(server)
        url = server.wait_ready()
        client = httpx.Client(base_url=url, timeout=10)
        clients.append(client)
        return server, url, client

    started: list[ServerProcess] = []
    clients: list[httpx.Client] = []
    yield start  # type: ignore[misc]
    for client in clients:
        client.close()
    for server in started:
        server.stop()


@pytest.mark.timeout(120)
def test_never_reading_streams_are_bounded_and_counted_as_taken(serve) -> None:  # noqa: ANN001
    server, url, client = serve()
    pid = worker(server)
    sockets = [never_reading(url, "/topics/big") for _ in range(STREAMS)]
    try:
        wait_until(lambda: client.get("/stats").json()["held_polls"] >= STREAMS, 20, "every stream to start")
        before = rss(pid)
        for n in range(ITEMS):
            assert client.post("/topics/big", json={"n": n, "pad": PAD}).status_code == 201
        published = quiet(client, "items_delivered")
        grown = rss(pid) - before
        assert grown <= 64 * 2**20, f"the worker grew by {grown / 2**20:.0f} MB for {STREAMS} streams: {published}"
        # What a socket can have taken: its receive buffer (the kernel doubles what is asked) and the most the
        # server's send buffer grows to, and a MiB for the server's own write buffer: items of 8 KB each.
        per_socket = (2 * RCVBUF + kernel_send_buffer() + 2**20) // 8000
        assert published["items_delivered"] <= STREAMS * per_socket
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: client.get("/stats").json()["held_polls"] == 0, 20, "the streams to end")
    closed = client.get("/stats").json()
    # Closed sockets take nothing: at most the frame each stream was writing when its client left (a frame
    # here is one item: each was published alone) may be counted after.  The old code wrote every session's
    # buffer (1000 items each) into the dead connections and counted it.
    rose = closed["items_delivered"] - published["items_delivered"]
    assert rose <= STREAMS, f"items_delivered rose by {rose} after the clients closed their sockets"


def _events(raw: bytes) -> list[tuple[str, dict]]:
    """The complete SSE events (id, data) of a raw HTTP/1.1 chunked response, however it was cut off."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    text = b""
    while body:
        size, sep, rest = body.partition(b"\r\n")
        if not sep or not size:
            break
        length = int(size, 16)
        text += rest[:length]
        body = rest[length + 2:]
        if length == 0 or len(rest) < length:
            break
    found = []
    for event in text.decode().split("\n\n")[:-1]:  # the last part is what follows the last complete event
        fields = dict(line.split(": ", 1) for line in event.split("\n") if ": " in line and not line.startswith(":"))
        if "data" in fields:
            found.append((fields.get("id", ""), json.loads(fields["data"])))
    return found


def _read_to_end(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the socket has, and whether the server closed it (EOF) within ``timeout`` of silence."""
    sock.settimeout(timeout)
    got = bytearray()
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        return bytes(got), False
    return bytes(got), True


@pytest.mark.timeout(120)
def test_a_stream_ended_by_the_budget_resumes_by_last_event_id_with_nothing_lost(serve) -> None:  # noqa: ANN001
    # The smallest budget, and items of 30 KB: three streams each waiting with one frame are past it, and a
    # stream that reads makes the frames that find the process past it.
    _, url, client = serve("--max-stream-bytes", "65536", "--max-topic-item-bytes", "40000")
    pad = "y" * 30_000
    sockets = [never_reading(url, "/topics/resume") for _ in range(3)]
    reader = httpx.Client(base_url=url, timeout=30)
    read: list[str] = []
    reading = threading.Thread(target=_read_lines, args=(reader, read), daemon=True)
    reading.start()
    try:
        wait_until(lambda: client.get("/stats").json()["held_polls"] >= 4, 20, "the streams to start")
        published = 0
        while client.get("/stats").json()["streams_ended_by_budget"] == 0:
            assert published < 1000, "no stream was ended by the budget"
            assert client.post("/topics/resume", json={"n": published, "pad": pad}).status_code == 201
            published += 1
        for _ in range(5):  # more after the end: the resumed stream must bring them too
            assert client.post("/topics/resume", json={"n": published, "pad": pad}).status_code == 201
            published += 1
        ended = []
        for sock in sockets:
            raw, closed = _read_to_end(sock, 2.0)
            if closed:
                ended.append(_events(raw))
        assert ended, "the budget ended a stream, but no connection was closed"
    finally:
        for sock in sockets:
            sock.close()
        reader.close()
    events = ended[0]
    got = [item["n"] for _, batch in events for item in batch["items"]]
    assert got == list(range(len(got))) and len(got) < published
    last_id = events[-1][0]
    with httpx.Client(base_url=url, timeout=10) as resumer, resumer.stream(
            "GET", "/topics/resume", headers={"Accept": "text/event-stream", "Last-Event-ID": last_id}) as answer:
        assert answer.status_code == 200
        data = []
        for line in answer.iter_lines():
            if line.startswith("data: "):
                batch = json.loads(line[6:])
                assert not batch.get("gap"), "the log still holds the stream's position: no gap"
                data += [item["n"] for item in batch["items"]]
                if len(got) + len(data) >= published:
                    break
    assert got + data == list(range(published)), "an item was lost or repeated across the resume"


def _read_lines(client: httpx.Client, into: list[str]) -> None:
    try:
        with client.stream("GET", "/topics/resume", headers={"Accept": "text/event-stream"}) as answer:
            into.extend(answer.iter_lines())
    except httpx.HTTPError:
        pass  # closed at the test's end


def _read_response(sock: socket.socket, timeout: float) -> bytes:
    """A response read to its end: the connection's close, or a chunked body's last chunk (kept alive)."""
    sock.settimeout(timeout)
    got = bytearray()
    try:
        while chunk := sock.recv(65536):
            got += chunk
            if got.endswith(b"\r\n0\r\n\r\n"):
                break
    except TimeoutError:
        raise AssertionError(f"the ended stream's response did not end ({len(got)} bytes read)") from None
    return bytes(got)


@pytest.mark.timeout(120)
def test_every_front_ends_a_slow_stream_past_the_budget_and_it_resumes(base, topics_broker) -> None:  # noqa: ANN001
    """cheroot's thread in a blocked write ends its stream once the write returns (the client reads again);
    ``longpoll.asgi`` (under uvicorn) gives the send up and closes the connection."""
    from longpoll.budget import BUDGET

    name = f"budget-{time.monotonic_ns()}"
    url = httpx.URL(base)
    budget, ended_before = BUDGET.max_bytes, BUDGET.ended
    BUDGET.max_bytes = 64 * 1024
    slow = never_reading(f"http://{url.host}:{url.port}", f"{url.path}/topics/{name}")
    reader = httpx.Client(base_url=base, timeout=30)
    read: list[str] = []

    def reading() -> None:
        try:
            with reader.stream("GET", f"/topics/{name}", headers={"Accept": "text/event-stream"}) as answer:
                read.extend(answer.iter_lines())
        except httpx.HTTPError:
            pass  # closed at the test's end

    threading.Thread(target=reading, daemon=True).start()
    published = 0
    try:
        deadline = time.monotonic() + 60
        while BUDGET.ended == ended_before:  # the slow stream's connection fills, then it holds a frame
            assert time.monotonic() < deadline, "the budget ended no stream"
            for _ in range(20):
                topics_broker.publish(name, {"n": published, "pad": PAD})
                published += 1
            time.sleep(0.05)  # publishing paced, so the reading stream makes frames meanwhile
        events = _events(_read_response(slow, 10))
    finally:
        BUDGET.max_bytes = budget
        slow.close()
        reader.close()
    got = [item["n"] for _, batch in events for item in batch["items"]]
    assert got == list(range(len(got))) and len(got) < published
    resume = {"Accept": "text/event-stream", "Last-Event-ID": events[-1][0]}
    with httpx.Client(base_url=base, timeout=10) as resumer, \
            resumer.stream("GET", f"/topics/{name}", headers=resume) as answer:
        data: list[int] = []
        for line in answer.iter_lines():
            if line.startswith("data: "):
                batch = json.loads(line[6:])
                assert not batch.get("gap")
                data += [item["n"] for item in batch["items"]]
                if len(got) + len(data) >= published:
                    break
    assert got + data == list(range(published))


def test_the_budget_ends_the_slow_streams_holding_most_never_one_whose_connection_keeps_up() -> None:
    from longpoll.budget import SLOW_SECONDS, StreamBudget

    budget = StreamBudget(max_bytes=100)
    cut: list[str] = []
    small, big, fresh = (budget.open(lambda n=n: cut.append(n)) for n in ("small", "big", "fresh"))
    assert budget.hold(small, 20) and budget.hold(big, 50)
    assert budget.hold(fresh, 40)  # past the budget, but nobody has waited: a burst, not a slow client
    assert cut == [] and budget.unsent == 110
    assert budget.took(fresh) and budget.unsent == 70
    small.since = big.since = time.monotonic() - SLOW_SECONDS  # their connections took nothing for that long
    assert budget.hold(fresh, 40)  # the maker's frame is fresh: the slow one holding most goes, only it
    budget.enforce()  # (the engine's sweep, if the frame came too soon after the last look)
    assert cut == ["big"] and budget.unsent == 60 and budget.ended == 1
    assert not budget.took(big) and budget.took(small) and budget.unsent == 40
    assert not budget.hold(big, 10)  # an ended stream makes no frame more
    for account in (small, big, fresh):
        budget.close(account)
    assert budget.unsent == 0
