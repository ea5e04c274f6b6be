"""A Python client of a longpoll server: what the CLI's post and tail use."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
from redis.backoff import EqualJitterBackoff

DEFAULT_URL = "http://127.0.0.1:8080"

RETRYABLE_4XX = frozenset({408, 409, 425, 429})
"""Answers worth polling again after a wait, as the browser client (web/longpoll.js)
treats them: a proxy's timeout, a poll another process answered at the same
moment (durable sessions), too early, too many."""


class ServerError(Exception):
    """The server answered an error (its JSON message is the text), or could not be reached."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code  # the JSON error code, e.g. "generator_failed"


def _answer(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    message = body.get("message") if isinstance(body, dict) else response.text[:200]
    retry = response.headers.get("Retry-After")
    raise ServerError(f"{response.status_code}: {message}", response.status_code,
                      float(retry) if retry and retry.isdigit() else None,
                      body.get("error") if isinstance(body, dict) else None)


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30):
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.token = token

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.token:
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {self.token}"
        try:
            return _answer(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach {self.http.base_url}: {exc}") from None

    def signup(self, login: str, name: str | None = None) -> dict[str, Any]:
        return self.request("POST", "/users", json={"login": login, **({"name": name} if name else {})})

    def post(self, message: str, location: str | None = None) -> dict[str, Any]:
        return self.request("POST", "/statuses", json={"message": message,
                                                       **({"location": location} if location else {})})

    def delete(self, status_id: int) -> dict[str, Any]:
        return self.request("DELETE", f"/statuses/{status_id}")

    def follow_user(self, login: str) -> dict[str, Any]:
        return self.request("POST", f"/users/{login}/follow")

    def unfollow_user(self, login: str) -> dict[str, Any]:
        return self.request("DELETE", f"/users/{login}/follow")

    def home(self, page: int = 1, count: int | None = None) -> dict[str, Any]:
        """A page of the token's user's home timeline, newest first."""
        return self.request("GET", "/home", params={"page": page, **({"count": count} if count else {})})

    def follow(self, path: str, params: dict[str, Any], method: str = "GET", timeout: float = 25,
               on_retry: Callable[[str, float], None] | None = None, transport: str = "poll") -> Iterator[Any]:
        """Every item of a long-poll stream, for as long as it lasts.

        ``transport``: ``poll`` (one request per batch), ``sse`` or ``ndjson``
        (one response carries batch after batch; a stream the server ends is
        resumed where it was, with Last-Event-ID or the key and cursor).
        Carries key and cursor; retries network errors, 5xx and 429 with
        jittered exponential backoff (at least ``Retry-After``), and so the
        4xx answers in :data:`RETRYABLE_4XX`; starts a new session on 410 (the
        server restarted and forgot it); raises ServerError on any other error,
        which retrying cannot fix, and on ``generator_failed`` (the session's
        generator raised: a new session would raise again).  The backoff only
        starts over once a session answers a second time, so a session that
        keeps failing right after it is made waits longer each round.
        """
        if not 0 <= timeout <= 60:
            raise ValueError(f"timeout must be 0-60 seconds, not {timeout!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        key = cursor = None
        backoff = EqualJitterBackoff(cap=30.0, base=0.5)
        failures = 0
        while True:
            try:
                for body in self._batches(path, params, method, timeout, transport, key, cursor):
                    if key is not None and body["key"] == key:
                        failures = 0  # the same session answered again: it is sound
                    key, cursor = body["key"], body["cursor"]
                    yield from body["items"]
                    if body["state"] == "done":
                        return
                    if body.get("retry_ms"):
                        time.sleep(body["retry_ms"] / 1000)
            except (httpx.TransportError, ServerError) as exc:
                status = getattr(exc, "status", None)
                if getattr(exc, "code", None) == "generator_failed":
                    raise
                if status == 410:
                    key = cursor = None
                    delay = backoff.compute(failures) if failures else 0.0  # a first restart at once
                    failures += 1
                    if on_retry:
                        on_retry("session expired; starting a new one", delay)
                    time.sleep(delay)
                    continue
                if status is not None and status < 500 and status not in RETRYABLE_4XX:
                    raise
                failures += 1
                delay = max(backoff.compute(failures), getattr(exc, "retry_after", None) or 0)
                if on_retry:
                    on_retry(str(exc), delay)
                time.sleep(delay)

    def _batches(self, path: str, params: dict[str, Any], method: str, timeout: float, transport: str,
                 key: str | None, cursor: str | None) -> Iterator[dict[str, Any]]:
        """The poll responses one request brings: one for a poll, as many as come for a stream."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}  # the home stream needs it
        sent = {**params, "timeout": timeout}
        if transport == "poll":
            if key:
                sent.update(key=key, cursor=cursor)
            if method == "GET":
                response = self.http.get(path, params=sent, timeout=timeout + 10, headers=headers)
            else:
                response = self.http.post(path, json=sent, timeout=timeout + 10, headers=headers)
            yield _answer(response)
            return
        headers["Accept"] = TRANSPORTS[transport]
        if key and transport == "sse":
            headers["Last-Event-ID"] = f"{key}.{cursor}"  # as EventSource resumes
        elif key:
            sent.update(key=key, cursor=cursor)
        with self.http.stream("GET", path, params=sent, headers=headers,
                              timeout=httpx.Timeout(10, read=STREAM_SILENCE)) as response:
            if response.status_code != 200:
                response.read()
                _answer(response)
            for frame in (_events if transport == "sse" else _lines)(response.iter_lines()):
                if "error" in frame:  # the stream's last word: an error, as a poll would have answered it
                    raise ServerError(f"{frame.get('status')}: {frame.get('message')}", frame.get("status"),
                                      None, frame["error"])
                yield frame


TRANSPORTS = {"poll": "application/json", "sse": "text/event-stream", "ndjson": "application/x-ndjson"}

STREAM_SILENCE = 60.0
"""A stream that sends nothing, not even a heartbeat (every 15 s), for this long is given up and resumed."""


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The data of each SSE event (comments and the retry preamble are the server's, not ours)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield orjson.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def _lines(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():  # an empty line is a heartbeat
            yield orjson.loads(line)
