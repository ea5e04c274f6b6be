"""Clients of the status streams, shared by the stream tests."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx

from longpoll import Broker


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def signup(client: httpx.Client, login: str | None = None) -> tuple[str, str]:
    login = login or unique()
    response = client.post("/users", data={"login": login})
    assert response.status_code == 201, response.text
    return login, response.json()["token"]


def post(client: httpx.Client, token: str, message: str, location: str | None = None) -> dict[str, Any]:
    data = {"message": message}
    if location is not None:
        data["location"] = location
    response = client.post("/statuses", data=data, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()


def delete(client: httpx.Client, token: str, status_id: int) -> httpx.Response:
    return client.delete(f"/statuses/{status_id}", headers={"Authorization": f"Bearer {token}"})


class Stream:
    """One long-poll session on a status stream, tracking key and cursor like a client would."""

    def __init__(self, client: httpx.Client, kind: str = "sample", identifier: str | None = None, **params: Any):
        self.client = client
        self.kind = kind
        self.identifier = identifier or unique("id")
        self.items: list[Any] = []
        self.dropped = 0
        first = self._request({**params, "timeout": 0})
        assert first.status_code == 200, first.text
        self._take(first.json())

    def _request(self, params: dict[str, Any]) -> httpx.Response:
        params = {"identifier": self.identifier, **params}
        if self.kind == "sample":
            return self.client.get("/statuses/sample.json", params=params)
        return self.client.post("/statuses/filter.json", data=params)

    def _take(self, body: dict[str, Any]) -> None:
        self.key, self.cursor = body["key"], body["cursor"]
        self.items.extend(body["items"])
        self.dropped = body.get("dropped", 0)

    def poll(self, timeout: float = 0, max_items: int = 1000) -> httpx.Response:
        response = self._request({"key": self.key, "cursor": self.cursor, "timeout": timeout, "max": max_items})
        if response.status_code == 200:
            self._take(response.json())
        return response

    def drain(self) -> list[Any]:
        """Everything already routed to the session (call settle() first)."""
        while True:
            before = len(self.items)
            response = self.poll(0)
            assert response.status_code == 200, response.text
            if len(self.items) == before:
                return self.items

    def collect(self, count: int, timeout: float = 60, poll_timeout: float = 2,
                clients: list[httpx.Client] | None = None) -> list[int]:
        """Poll like a real client until count statuses arrived: ride out refused
        connections, 503 (as long as Retry-After says) and 409 by polling again with
        the same cursor; with several clients, alternate between them every poll."""
        deadline = time.monotonic() + timeout
        turn = 0
        while len(self.ids()) < count:
            assert time.monotonic() < deadline, f"only {len(self.ids())} of {count} arrived"
            if clients:
                self.client = clients[turn % len(clients)]
                turn += 1
            try:
                response = self.poll(timeout=poll_timeout)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if response.status_code == 503:
                assert int(response.headers["Retry-After"]) >= 1
                time.sleep(0.1)
            elif response.status_code != 409:
                assert response.status_code == 200, response.text
        return self.ids()

    def ids(self) -> list[int]:
        return [item["id"] for item in self.items if not item.get("deleted")]


def settle(broker: Broker, timeout: float = 15) -> None:
    """Wait until the hub has dispatched everything published so far.

    The hub dispatches in log order, so once a marker published now has been
    delivered, so has everything before it.
    """
    topic = unique("settle-")
    with broker.subscribe(topic) as sub:
        arrived = threading.Event()
        sub.add_waiter(arrived.set)
        broker.publish(topic, "marker")
        assert arrived.wait(timeout), "the hub did not dispatch the marker"
