"""Backends: where published items live between the publisher and the hubs, and where durable sessions
are kept.  The one place the backend is chosen is :func:`open`.

Brokers on the same URL and prefix share one backend (one Redis client and
pool, one session store, one release channel); :func:`stores` lists the
session stores open in this process, which is where a poll whose key this
process does not hold looks for its session.
"""

from __future__ import annotations

import threading
import weakref

from .base import DEFAULT_LOG_RETENTION, DEFAULT_RETENTION, Backend, Entry, Log, Retention, SessionStore, order
from .memory import MemoryBackend, MemoryLog

PREFIX = "longpoll:"
"""What every Redis key longpoll writes starts with, unless told otherwise."""

_open: weakref.WeakValueDictionary[tuple[str, str], Backend] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def open(url: str | None = None, *, prefix: str = PREFIX) -> Backend:  # noqa: A001 (the backend's name for it)
    """The backend for a Redis URL (shared by everything that opens the same URL and prefix), or, without
    one, a new embedded backend."""
    if not url:
        return MemoryBackend(prefix)
    if not prefix or not isinstance(prefix, str):
        raise ValueError("prefix must be a non-empty string, such as 'longpoll:'")
    with _lock:
        found = _open.get((url, prefix))
        if found is None:
            from .redis import RedisBackend  # redis-py is imported when a Redis URL is first given

            found = _open[(url, prefix)] = RedisBackend(url, prefix)
        return found


def forget(backend: Backend) -> None:
    """A closed backend is shared no more: the next :func:`open` of its URL makes a new one."""
    with _lock:
        for name, found in list(_open.items()):
            if found is backend:
                del _open[name]


def stores() -> list[SessionStore]:
    """The session stores open in this process."""
    with _lock:
        return [backend.sessions for backend in _open.values() if backend.sessions is not None]


__all__ = ["Backend", "SessionStore", "Entry", "Log", "MemoryLog", "MemoryBackend", "Retention", "DEFAULT_RETENTION",
           "DEFAULT_LOG_RETENTION", "PREFIX", "open", "forget", "stores", "order"]
