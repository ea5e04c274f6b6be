"""Hydrators: functions that enrich each status once, before it is published.

The tweet pipeline's hydrate-then-publish: when a status is posted, each
registered hydrator gets it (everything but its id, which the store assigns
as it publishes) and returns fields to add.  The store keeps the enriched
status and publishes it, so every stream, every process and every timeline
sees the same fields, and the work is done once per status, not once per
session or per process.

A hydrator never holds up posting for long: each runs on its own small
thread pool and is waited for at most its timeout; one that raises, returns
something that is not a JSON object, or is late is skipped for that status
and counted (``hydrator_errors``, ``hydrator_timeouts`` in /stats).  A late
one keeps its thread until it returns; once all its threads are stuck, it is
skipped at once.  Hydrated fields never replace the status's own fields.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import orjson

from ... import track

log = logging.getLogger("longpoll")

Hydrator = Callable[[dict[str, Any]], Mapping[str, Any] | None]

PROTOCOL_FIELDS = frozenset({"id", "uid", "login", "message", "posted", "location", "deleted"})

THREADS = 4
"""Threads per hydrator: posts hydrate in parallel; this many stuck calls and it is skipped outright."""


class _Entry:
    def __init__(self, name: str, func: Hydrator, timeout: float):
        self.name = name
        self.func = func
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(THREADS, thread_name_prefix=f"longpoll-hydrator-{name}")
        self.stuck = 0  # calls past their timeout that have not returned yet
        self.lock = threading.Lock()

    def call(self, status: dict[str, Any]) -> dict[str, Any]:
        fields = self.func(status)
        if fields is None:
            return {}
        if not isinstance(fields, Mapping) or not all(isinstance(key, str) for key in fields):
            raise TypeError(f"hydrator {self.name!r} must return a mapping of field names, not {type(fields)}")
        fields = dict(fields)
        orjson.dumps(fields)  # not JSON: fails here, not in every response that carries the status
        return fields

    def unstick(self, _: Future) -> None:
        with self.lock:
            self.stuck -= 1


class Hydrators:
    """The registered hydrators of an app; calling it hydrates one status."""

    def __init__(self, timeout: float = 0.1):
        self.timeout = timeout
        self._entries: dict[str, _Entry] = {}
        self.errors = 0
        self.timeouts = 0
        track(self)

    def register(self, name: str, func: Hydrator, timeout: float | None = None) -> None:
        """Add (or replace) a hydrator: ``func(status)`` returns a mapping of fields to add, or None."""
        self.unregister(name)
        self._entries = {**self._entries, name: _Entry(name, func, self.timeout if timeout is None else timeout)}

    def unregister(self, name: str) -> None:
        entries = dict(self._entries)
        entry = entries.pop(name, None)
        self._entries = entries
        if entry is not None:
            entry.pool.shutdown(wait=False)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __call__(self, status: dict[str, Any]) -> dict[str, Any]:
        """The fields the hydrators add to this status (its own fields are never replaced)."""
        started = time.monotonic()
        running: list[tuple[_Entry, Future]] = []
        for entry in self._entries.values():
            with entry.lock:
                if entry.stuck >= THREADS:
                    self.timeouts += 1
                    continue
            running.append((entry, entry.pool.submit(entry.call, dict(status))))
        extra: dict[str, Any] = {}
        for entry, future in running:
            try:
                fields = future.result(max(0.0, started + entry.timeout - time.monotonic()))
            except FutureTimeout:
                self.timeouts += 1
                with entry.lock:
                    entry.stuck += 1
                future.add_done_callback(entry.unstick)
                log.warning("hydrator %r took longer than %gs; status posted without it", entry.name, entry.timeout)
                continue
            except Exception:
                self.errors += 1
                log.exception("hydrator %r raised; status posted without it", entry.name)
                continue
            for key, value in fields.items():
                if key not in status and key not in PROTOCOL_FIELDS:
                    extra.setdefault(key, value)
        return extra

    def stats(self) -> dict[str, int]:
        return {"hydrator_errors": self.errors, "hydrator_timeouts": self.timeouts}


def author_name(store: Any, cache_size: int = 10_000) -> Hydrator:
    """The hydrator ``longpoll serve`` registers: the author's display ``name`` (names never change)."""
    names: dict[int, str] = {}

    def name(status: dict[str, Any]) -> dict[str, Any] | None:
        uid = status["uid"]
        found = names.get(uid)
        if found is None:
            found = store.user_name(uid)
            if found is None:
                return None
            if len(names) >= cache_size:
                names.clear()
            names[uid] = found
        return {"name": found}

    return name
