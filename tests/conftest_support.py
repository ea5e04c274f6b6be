"""Small helpers shared by conftest and the process harnesses."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait (bounded) for a state the test cannot be notified of, e.g. a poll being held server-side."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def polled(registry, session, poll):  # noqa: ANN001, ANN201 (a test's shorthand)
    """One poll of a session, counted by its registry as the lifecycle counts it (no store, no HTTP)."""
    try:
        batch = session.poll(poll)
    except BaseException:
        registry.polled(session, None)
        raise
    registry.polled(session, batch)
    return batch


def waiting(registry: Any, key: str) -> bool:
    """Whether a poll of the session waits now, on whichever front holds it."""
    session = registry.get(key)
    return session is not None and session._waiter is not None
