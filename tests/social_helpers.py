"""Clients of the social graph and the home stream, shared by the social tests."""

from __future__ import annotations

from typing import Any

import cherrypy
import httpx

from tests.conftest_support import wait_until
from tests.streams_helpers import Stream


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def follow(client: httpx.Client, token: str, login: str) -> httpx.Response:
    return client.post(f"/users/{login}/follow", headers=auth(token))


def unfollow(client: httpx.Client, token: str, login: str) -> httpx.Response:
    return client.delete(f"/users/{login}/follow", headers=auth(token))


def ids(statuses: list[dict[str, Any]]) -> list[int]:
    return [status["id"] for status in statuses]


def home(client: httpx.Client, token: str, **params: Any) -> list[int]:
    response = client.get("/home", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    return ids(response.json()["statuses"])


def profile(client: httpx.Client, login: str, **params: Any) -> list[int]:
    response = client.get(f"/users/{login}/statuses", params=params)
    assert response.status_code == 200, response.text
    return ids(response.json()["statuses"])


def store_of(mount: str) -> Any:
    """The store behind an app tree mounted on the test server (its /users node keeps it)."""
    return cherrypy.tree.apps[mount].root.users.store


def syndicated(store: Any, timeout: float = 20) -> None:
    """Wait until the store's syndication queue is empty (every home timeline written)."""
    wait_until(lambda: store.syndication_pending() == 0, timeout, "syndication to finish")


class HomeStream(Stream):
    """A home-stream session: GET /statuses/home.json with the user's token on every poll."""

    def __init__(self, client: httpx.Client, token: str, identifier: str | None = None, **params: Any):
        self.token = token
        super().__init__(client, "home", identifier, **params)

    def _request(self, params: dict[str, Any]) -> httpx.Response:
        return self.client.get("/statuses/home.json", params={"identifier": self.identifier, **params},
                               headers=auth(self.token))

    def deleted(self) -> list[int]:
        return [item["id"] for item in self.items if item.get("deleted")]
