"""Testing an app's long-poll endpoints: a client that polls as the browser client does.

``Client`` follows a session's key and cursor, collects the items, and
raises for an error answer.  It polls an endpoint in this process (the
``json_yield`` handler itself: no server, no sockets) or over HTTP (a URL),
with the same calls::

    from longpoll.testing import Client, settle

    def test_news_reaches_a_poll():
        client = Client(Root().news)            # or Client("http://127.0.0.1:8080/news")
        client.poll()                           # the first poll makes the session
        broker.publish("news", {"title": "hi"})
        assert client.take(1) == [{"title": "hi"}]

In this process the endpoint answers as it would under CherryPy, except
that no CherryPy request exists: a ``bind=`` or a generator that reads
``cherrypy.request`` or ``cherrypy.session`` needs the HTTP form.  The
engine's plugin runs what the endpoint needs (the broker's hub, expiry):
start it with ``cherrypy.engine.start()`` (or run your app's server).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from .endpoint import endpoint_of
from .errors import Expired
from .params import NO_BODY

__all__ = ["Client", "PollError", "settle"]


class PollError(Exception):
    """An answer other than 200 (410 raises ``longpoll.Expired``)."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(f"{status} {body.get('error')}: {body.get('message')}")
        self.status = status
        self.body = body


class Client:
    """One client of one endpoint: its session's key and cursor, and every item it received, in order.

    ``target`` is a ``json_yield`` handler (polled in this process) or the endpoint's URL; ``args`` are the
    path segments a handler takes positionally (in a URL they are in its path); ``params`` the first poll's
    own parameters.
    """

    def __init__(self, target: Any, *, args: tuple[str, ...] = (), address: str = "127.0.0.1", **params: Any):
        self.target = target
        self.args = args
        self.address = address
        self.params = params
        self.key: str | None = None
        self.cursor: str | None = None
        self.items: list[Any] = []
        self.gaps = 0
        self.dropped = 0
        self.state: str | None = None

    def poll(self, timeout: float = 0.0, max: int | None = None) -> dict[str, Any]:
        """One poll (the first makes the session); its answer's body.  Raises ``Expired`` on 410 (the key is
        forgotten, so the next poll starts anew) and :class:`PollError` on any other error."""
        asked: dict[str, Any] = {"timeout": timeout}
        if max is not None:
            asked["max"] = max
        if self.key is None:
            asked.update(self.params)
        else:
            asked.update(key=self.key, cursor=self.cursor)
        status, body = self._send(asked)
        if status == 410:
            self.key = self.cursor = None
            raise Expired(body.get("message", "expired"))
        if status != 200:
            raise PollError(status, body)
        self.key, self.cursor, self.state = body["key"], body["cursor"], body["state"]
        self.items.extend(body["items"])
        self.gaps += bool(body.get("gap"))
        self.dropped = max_of(self.dropped, body.get("dropped", 0))
        return body

    def take(self, count: int, timeout: float = 10.0, poll_timeout: float = 1.0) -> list[Any]:
        """Poll until ``count`` more items arrived (or the session is done); those items.  Waits at most
        ``timeout`` seconds, then raises AssertionError saying how many came."""
        start = len(self.items)
        deadline = time.monotonic() + timeout
        while len(self.items) - start < count and self.state != "done":
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.items) - start} of {count} items arrived within {timeout} s")
            self.poll(timeout=min(poll_timeout, left))
        return self.items[start:start + count]

    def _send(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if isinstance(self.target, str):
            return _http(self.target, params)
        status, _headers, body = endpoint_of(self.target).answer(
            "GET", self.args, {k: str(v) for k, v in params.items()}, {}, NO_BODY, lambda: self.address)
        if not isinstance(body, bytes):
            raise TypeError("Client polls; streams are read over HTTP")
        return status, orjson.loads(body)


def max_of(a: int, b: int) -> int:
    return a if a >= b else b


def _http(url: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(f"{url}{'&' if '?' in url else '?'}{query}",
                                     headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=float(params.get("timeout", 0)) + 30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": "not_json", "message": str(exc)}


def settle(broker: Any, timeout: float = 10.0) -> None:
    """Wait until the broker's hub has read everything published so far, so a poll with ``timeout=0`` sees it
    (the hub reads the log on a thread of its own)."""
    target = broker.log.tail()
    deadline = time.monotonic() + timeout
    from .backends.base import order

    while broker.hub.position is None or order(broker.hub.position) < order(target):
        if time.monotonic() > deadline:
            raise AssertionError(f"the hub did not read up to {target} within {timeout} s")
        time.sleep(0.005)

