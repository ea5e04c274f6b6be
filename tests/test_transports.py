"""Streams of the same sessions: Server-Sent Events and chunked JSON lines (PROTOCOL.md, "Transports").

Every test runs on both backends and both fronts (CherryPy's handlers, and
the fast path), through a real HTTP client reading the stream as it comes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.procs import ServerProcess
from tests.streams_helpers import post, settle, signup, unique

SSE = {"Accept": "text/event-stream"}
LINES = {"Accept": "application/x-ndjson"}


class Reader:
    """A stream read in a thread of its own, frame by frame: SSE events or JSON lines."""

    def __init__(self, client: httpx.Client, method: str, path: str, headers: dict[str, str], **kwargs: Any):
        self.frames: list[dict[str, Any]] = []
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.heartbeats = 0
        self.error: httpx.HTTPError | None = None  # how it ended, if not by the server's end of the body
        self.ended = threading.Event()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(client, method, path, headers, kwargs), daemon=True)
        self._thread.start()

    def _read(self, client: httpx.Client, method: str, path: str, headers: dict[str, str], kwargs: Any) -> None:
        sse = headers.get("Accept") == "text/event-stream"
        try:
            with client.stream(method, path, headers=headers, timeout=httpx.Timeout(30, read=60), **kwargs) as r:
                self.status, self.headers = r.status_code, dict(r.headers)
                if r.status_code != 200:
                    self._add({"status": r.status_code, "body": json.loads(r.read())})
                    return
                for frame in (events(r.iter_lines()) if sse else lines(r.iter_lines())):
                    if frame is None:
                        self.heartbeats += 1
                    else:
                        self._add(frame)
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.ended.set()
            with self._arrived:
                self._arrived.notify_all()

    def _add(self, frame: dict[str, Any]) -> None:
        with self._arrived:
            self.frames.append(frame)
            self._arrived.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self):
                left = deadline - time.monotonic()
                assert left > 0 and not (self.ended.is_set() and not predicate(self)), \
                    (self.status, self.error, self.heartbeats, self.frames)
                self._arrived.wait(left)

    def items(self) -> list[Any]:
        return [item for frame in self.frames if "data" in frame for item in frame["data"].get("items", [])]


def events(source: Iterator[str]) -> Iterator[dict[str, Any] | None]:
    """SSE frames: {"event", "id", "data"} dicts; None for a heartbeat comment."""
    frame: dict[str, Any] = {}
    for line in source:
        if line == "":
            if "data" in frame or "event" in frame:  # a bare "retry:" is the stream's preamble
                yield frame
            frame = {}
        elif line.startswith(":"):
            yield None
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            frame[name] = json.loads(value) if name == "data" else value


def lines(source: Iterator[str]) -> Iterator[dict[str, Any] | None]:
    for line in source:
        yield json.loads(line) if line.strip() else None


@pytest.mark.parametrize("transport", ["sse", "ndjson"])
def test_a_stream_delivers_batches_as_they_come(client, topics_broker, transport):
    topic = "/topics/stream-" + uuid.uuid4().hex
    headers = SSE if transport == "sse" else LINES
    reader = Reader(client, "GET", topic, headers)
    reader.wait_for(lambda r: r.frames)  # the new session's first batch: its key, at once
    first = reader.frames[0]["data"] if transport == "sse" else reader.frames[0]
    assert first["items"] == [] and first["key"]
    if transport == "sse":
        assert reader.headers["content-type"] == "text/event-stream;charset=utf-8"
        assert reader.frames[0]["id"] == f"{first['key']}.0"
    for n in range(3):
        topics_broker.publish(topic.rsplit("/", 1)[1], n)
    items = (lambda r: r.items()) if transport == "sse" else (lambda r: [i for f in r.frames for i in f["items"]])
    reader.wait_for(lambda r: items(r) == [0, 1, 2])


def test_sse_resumes_with_last_event_id_losing_and_repeating_nothing(client, topics_broker):
    name = "resume-" + uuid.uuid4().hex
    one = Reader(client, "GET", f"/topics/{name}", SSE)
    one.wait_for(lambda r: r.frames)
    for n in range(4):
        topics_broker.publish(name, n)
    one.wait_for(lambda r: r.items() == [0, 1, 2, 3])
    # Say the client got the events up to the one with item 0 only (the rest were lost with the connection).
    upto = next(n for n, f in enumerate(one.frames) if 0 in f["data"]["items"])
    got_before = [i for f in one.frames[:upto + 1] for i in f["data"]["items"]]
    topics_broker.publish(name, 4)
    again = Reader(client, "GET", f"/topics/{name}", {**SSE, "Last-Event-ID": one.frames[upto]["id"]})
    again.wait_for(lambda r: r.items() and r.items()[-1] == 4)
    assert got_before + again.items() == [0, 1, 2, 3, 4]  # nothing lost, nothing twice


def test_a_stream_and_polls_alternate_on_one_session(client, topics_broker):
    name = "alternate-" + uuid.uuid4().hex
    polled = client.get(f"/topics/{name}", params={"timeout": 0}).json()
    topics_broker.publish(name, "a")
    reader = Reader(client, "GET", f"/topics/{name}", {**SSE, "Last-Event-ID": f"{polled['key']}.{polled['cursor']}"})
    reader.wait_for(lambda r: r.items() == ["a"])
    last = reader.frames[-1]["id"].split(".", 1)[1]
    topics_broker.publish(name, "b")
    reader.wait_for(lambda r: r.items() == ["a", "b"])
    # The client's next poll says what it has; a newer poll also takes over from the stream.
    again = client.get(f"/topics/{name}", params={"key": polled["key"], "cursor": last, "timeout": 0}).json()
    assert again["items"] == ["b"]  # the stream's batch not yet acknowledged by the poll is sent again
    reader.ended.wait(10)
    assert reader.ended.is_set()  # the newer poll took over: the stream ended


def test_a_stream_ends_at_done_and_says_so(client):
    reader = Reader(client, "GET", "/primes", SSE, params={"limit": 20, "max": 4})
    reader.wait_for(lambda r: r.ended.is_set())
    assert reader.items() == [2, 3, 5, 7, 11, 13, 17, 19]
    assert reader.frames[-1]["event"] == "done" and reader.frames[-1]["data"]["state"] == "done"


def test_an_unknown_key_is_one_expired_event_on_sse_and_a_410_on_lines(client):
    gone = {"Last-Event-ID": "A" * 24 + ".3"}
    reader = Reader(client, "GET", "/primes", {**SSE, **gone})
    reader.wait_for(lambda r: r.ended.is_set())
    assert reader.status == 200 and [f.get("event") for f in reader.frames] == ["expired"]
    assert reader.frames[0]["data"]["error"] == "expired"
    lines_reader = Reader(client, "GET", "/primes", LINES, params={"key": "A" * 24, "cursor": "3"})
    lines_reader.wait_for(lambda r: r.ended.is_set())
    assert lines_reader.status == 410


@pytest.mark.parametrize("header,status", [("nonsense", 400), ("a.b.c!", 400)])
def test_a_malformed_last_event_id_is_a_json_400(client, header, status):
    answer = client.get("/primes", headers={**SSE, "Last-Event-ID": header})
    assert answer.status_code == status and answer.json()["param"] == "Last-Event-ID"


def test_another_identifiers_key_is_403_before_the_stream(client):
    first = client.get("/statuses/sample.json", params={"identifier": unique("own"), "timeout": 0}).json()
    stolen = client.get("/statuses/sample.json", params={"identifier": unique("thief")},
                        headers={**SSE, "Last-Event-ID": f"{first['key']}.{first['cursor']}"})
    assert stolen.status_code == 403 and stolen.json()["error"] == "forbidden"


def test_an_accept_it_cannot_serve_is_a_long_poll(client):
    answer = client.get("/primes", params={"limit": 10}, headers={"Accept": "text/html, image/png"})
    assert answer.headers["content-type"] == "application/json" and answer.json()["items"] == [2, 3, 5, 7]


def test_the_filter_stream_takes_its_filter_on_get_for_eventsource(client, broker):
    word = unique("w")
    reader = Reader(client, "GET", "/statuses/filter.json", SSE, params={"identifier": unique("es"), "track": word})
    reader.wait_for(lambda r: r.frames)
    _, token = signup(client)
    posted = [post(client, token, f"{word} {n}")["id"] for n in range(3)]
    post(client, token, "not for it")
    settle(broker)
    reader.wait_for(lambda r: [i["id"] for i in r.items()] == posted)


def test_a_quiet_stream_sends_heartbeats_and_ends_after_its_longest(client):
    """/t/beats: a heartbeat every 0.2 s, and streams end after 1.5 s (PollLimits)."""
    reader = Reader(client, "GET", "/t/beats", SSE, params={"topic": "quiet-" + uuid.uuid4().hex})
    reader.wait_for(lambda r: r.ended.is_set(), timeout=15)
    assert reader.heartbeats >= 3 and len(reader.frames) == 1  # its first batch, then only heartbeats


def test_an_open_stream_is_a_held_poll_and_a_vanished_client_frees_it(base):
    from tests.apps import VANISHING
    from tests.conftest_support import wait_until

    url = httpx.URL(base)
    assert VANISHING.held == 0
    with socket.create_connection((url.host, url.port), timeout=10) as conn:
        conn.sendall(f"GET {url.path}/t/vanishing?topic=gone-{uuid.uuid4().hex} HTTP/1.1\r\nHost: x\r\n"
                     f"Accept: text/event-stream\r\n\r\n".encode())
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        wait_until(lambda: VANISHING.held == 1, what="the stream to hold its place")
    # The client is gone: the next heartbeat's write fails and the place is given back.
    wait_until(lambda: VANISHING.held == 0, timeout=5, what="the vanished stream to be let go")


def test_longpoll_serve_sets_the_streams_length_and_heartbeat():
    """--max-stream-seconds and --heartbeat reach the streams of every endpoint (a JSON-lines stream here)."""
    with ServerProcess("--max-stream-seconds", "1.5", "--heartbeat", "0.2") as server:
        url = server.wait_ready()
        began = time.monotonic()
        with httpx.Client(timeout=10) as client, client.stream(
                "GET", url + "/topics/" + unique("beats"), headers={"Accept": "application/x-ndjson"}) as response:
            lines = list(response.iter_lines())
        lasted = time.monotonic() - began
    assert response.status_code == 200
    assert lines[0].startswith("{") and '"key"' in lines[0]  # a new session's first batch, at once
    assert lines[1:].count("") >= 4  # heartbeats every 0.2 s of silence
    assert lasted >= 1.4, lasted  # the list above ends only when the server ends the stream: at its limit


def test_a_stream_turned_away_by_a_full_gate_says_when_to_come_back_and_which_session():
    """The hold gate is full: the stream ends at once with a retry and the session's id, so EventSource
    reconnects later with Last-Event-ID and resumes that session instead of making a new one each time."""
    from tests.conftest_support import wait_until

    with ServerProcess("--max-held-polls", "1", "--heartbeat", "0.3") as server:
        url = server.wait_ready()
        topic = f"{url}/topics/{unique('full')}"
        with httpx.Client(timeout=10) as client:
            with client.stream("GET", topic, headers=SSE) as holding:
                lines = holding.iter_lines()  # kept: a line iterator dropped closes the response, and the stream
                first = next(lines)
                assert first.startswith("retry: 2000")
                turned = client.get(topic, headers=SSE)  # ends at once: the only place is taken
            assert turned.status_code == 200
            fields = dict(line.split(": ", 1) for line in turned.text.splitlines() if ": " in line)
            turned_batch = json.loads(fields["data"])
            assert fields["retry"] == "1000" and turned_batch["retry_ms"] == 1000 and turned_batch["items"] == []
            assert fields["id"] == f"{turned_batch['key']}.{turned_batch['cursor']}"
            key, cursor = fields["id"].split(".", 1)
            assert client.post(topic, json="later").status_code == 201
            # the first stream's client is gone: its place is free at its next heartbeat
            wait_until(lambda: client.get(url + "/stats").json()["held_polls"] == 0, what="the place to be free")
            resumed = Reader(client, "GET", topic, {**SSE, "Last-Event-ID": f"{key}.{cursor}"})
            resumed.wait_for(lambda r: r.items() == ["later"])
            assert resumed.frames[-1]["data"]["key"] == key
