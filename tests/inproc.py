"""Two server processes in one test process, for interleavings a test must control exactly.

A :class:`Process` is what one server process holds of an app: its own
connection to Redis (so its own holder id in the session store, and its own
release listener), its own broker and hub, and its own endpoints (registry
and lifecycle).  The app's functions are made per process from a
recipe, as an app module imported in each process would make them.  Tests
that need the real thing (processes, a proxy, restarts) use ``procs.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import longpoll
from longpoll.backends.redis import RedisBackend
from longpoll.endpoint import endpoint_of
from longpoll.lifecycle import Lifecycle
from tests.conftest_support import wait_until, waiting


class Process:
    def __init__(self, url: str, prefix: str, app: Callable[[longpoll.Broker], dict[str, Any]], **broker: Any):
        self.backend = RedisBackend(url, prefix)
        self.broker = longpoll.Broker(backend=self.backend, **broker)
        self.handlers = app(self.broker)
        for handler in self.handlers.values():
            if not hasattr(handler, "endpoint"):
                continue  # something else the app made, for the test to use
            endpoint = endpoint_of(handler)
            endpoint.lifecycle = Lifecycle(endpoint.registry, stores=lambda: [self.backend.sessions])
            endpoint.lifecycle._listen(self.backend.sessions)
        self.backend.sessions.listener.start()
        assert self.backend.sessions.listener.subscribed.wait(10)

    def __getitem__(self, name: str) -> Any:
        return self.handlers[name]

    def registry(self, name: str) -> Any:
        return endpoint_of(self.handlers[name]).registry

    def held(self, name: str, key: str) -> bool:
        """Whether a poll of that session waits here now."""
        return waiting(self.registry(name), key)

    def wait_held(self, name: str, key: str) -> None:
        wait_until(lambda: self.held(name, key), what=f"a poll of {key[:6]} to be held")

    def stop(self) -> None:
        """The process goes away: its copies close (their generators' finally blocks run), nothing is deleted."""
        for handler in self.handlers.values():
            if hasattr(handler, "endpoint"):
                endpoint_of(handler).registry.close_all()
        self.backend.sessions.listener.stop()
        self.broker.hub.stop()


def chat(broker: longpoll.Broker) -> dict[str, Any]:
    """The README's shape: a room's messages, filtered in the app's own code."""

    @longpoll.json_yield(name="tests.chat")
    def room(room: str) -> Any:
        return (m for m in broker.feed("chat") if m["room"] == room)

    @longpoll.json_yield(name="tests.news")
    def news(backfill: str = "0") -> Any:
        yield from broker.feed("news", backfill=int(backfill))

    @longpoll.json_yield(name="tests.counter")
    def counter() -> Any:
        """State of its own (a count), so a session of the process that made it."""
        with broker.subscribe("news") as sub:
            n = 0
            while True:
                for item in sub.drain():
                    n += 1
                    yield {"n": n, "item": item}
                yield sub

    @longpoll.json_yield(name="tests.mixed")
    def mixed() -> Any:
        """Feed items, then one of its own: no longer a recipe."""
        for item in broker.feed("news"):
            yield item
            if item == "mine":
                yield {"own": True}

    return {"room": room, "news": news, "counter": counter, "mixed": mixed}
