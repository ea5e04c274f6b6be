"""One session taken turn by turn over every transport, as a page on ``transport: "auto"``, a curl loop and
a reconnecting EventSource would: polls, SSE streams dropped after a few events and resumed with
Last-Event-ID, and JSON-lines streams resumed with key and cursor."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

TRANSPORTS = ("poll", "sse", "ndjson")


class MixedClient:
    def __init__(self, client: httpx.Client, path: str, params: dict[str, Any], rng: random.Random,
                 always: dict[str, Any] | None = None):
        """``params`` go with the first poll, ``always`` with every request (the status streams' identifier)."""
        self.client = client
        self.path = path
        self.params = params
        self.always = always or {}
        self.rng = rng
        self.key: str | None = None
        self.cursor: str | None = None
        self.items: list[Any] = []
        self.statuses: list[int] = []  # every answer's status, or 0 for a connection that failed
        self.gaps = 0
        self.used: set[str] = set()

    def step(self, timeout: float = 1.0, transport: str | None = None) -> None:
        """One turn: a poll, or a stream read for a few events (or until it has been quiet for ``timeout``)."""
        transport = transport or (self.rng.choice(TRANSPORTS) if self.key else "poll")
        self.used.add(transport)
        try:
            if transport == "poll":
                self._poll(timeout)
            else:
                self._stream(transport, timeout, self.rng.randint(1, 4))
        except httpx.TransportError:
            self.statuses.append(0)  # a server going down mid-answer: the next turn resumes

    def _asked(self) -> dict[str, Any]:
        asked = {**self.params} if self.key is None else {"key": self.key, "cursor": self.cursor}
        return {**asked, **self.always}

    def _take(self, body: dict[str, Any]) -> None:
        self.key, self.cursor = body["key"], body["cursor"]
        self.items.extend(body["items"])
        self.gaps += bool(body.get("gap"))

    def _poll(self, timeout: float) -> None:
        answer = self.client.get(self.path, params={**self._asked(), "timeout": timeout})
        self.statuses.append(answer.status_code)
        if answer.status_code == 200:
            self._take(answer.json())

    def _stream(self, transport: str, quiet: float, events: int) -> None:
        headers = {"Accept": "text/event-stream" if transport == "sse" else "application/x-ndjson"}
        params: dict[str, Any] = dict(self.always)
        if transport == "sse":
            headers["Last-Event-ID"] = f"{self.key}.{self.cursor}"
        else:
            params = self._asked()
        timeout = httpx.Timeout(10.0, read=quiet)
        with self.client.stream("GET", self.path, params=params, headers=headers, timeout=timeout) as answer:
            self.statuses.append(answer.status_code)
            if answer.status_code != 200:
                return
            try:
                for frame in _frames(answer, transport):
                    if "error" in frame:
                        self.statuses.append(frame.get("status", 500))  # said in the stream: expired, say
                        return
                    if "items" in frame:
                        self._take(frame)
                        events -= bool(frame["items"])
                    if events <= 0 or frame.get("state") == "done":
                        return  # dropped: the client goes away mid-stream
            except httpx.ReadTimeout:
                return  # quiet for a while: go on with another turn


def _frames(answer: httpx.Response, transport: str) -> Iterator[dict[str, Any]]:
    data: list[str] = []
    for line in answer.iter_lines():
        if transport == "ndjson":
            if line.strip():
                yield orjson.loads(line)
            continue
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield orjson.loads("".join(data))
            data = []
