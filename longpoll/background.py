"""One daemon thread that runs a step again and again, for the process's background loops.

The hub's reader, the Redis channel listener and the status streams'
syndicator are each the only one of their kind in a process: a Redis outage
or a bug in one step must not end them.  So a step that raises is reported
once per run of failures and tried again after redis-py's jittered backoff,
which is what the clients of one Redis restarting together need.  Modelled on
CherryPy's ``BackgroundTask``, which has no backoff and dies with its
function's first exception.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from redis.backoff import EqualJitterBackoff


class Worker:
    """``step`` runs until :meth:`stop`.  ``failed(exc, failures)`` hears of each failed step (``failures``
    counts the run, from 1), ``recovered()`` of the first good step after them.

    A bound method is held weakly: the thread ends when its owner is dropped, so a forgotten hub or store
    does not keep its reader alive.
    """

    def __init__(self, name: str, step: Callable[[], Any], *,
                 failed: Callable[[BaseException, int], None] | None = None,
                 recovered: Callable[[], None] | None = None) -> None:
        self.name = name
        self._step = _weak(step)
        self._failed = _weak(failed)
        self._recovered = _weak(recovered)
        self.failures = 0
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def succeeded(self) -> None:
        """A step that runs for long (a subscription) says it works before it returns."""
        if self.failures:
            self.failures = 0
            recovered = self._recovered()
            if recovered is not None:
                recovered()

    def _run(self) -> None:
        backoff = EqualJitterBackoff(cap=5.0, base=0.1)
        stopping = self.stopping
        while not stopping.is_set():
            step = self._step()
            if step is None:  # its owner is gone
                return
            try:
                step()
            except Exception as exc:  # never die: the next step may work
                self.failures += 1
                failed = self._failed()
                if failed is not None:
                    failed(exc, self.failures)
                del step, failed
                stopping.wait(backoff.compute(self.failures))
            else:
                del step
                self.succeeded()


def _weak(function: Callable[..., Any] | None) -> Callable[[], Callable[..., Any] | None]:
    if function is None:
        return lambda: None
    if hasattr(function, "__self__"):
        return weakref.WeakMethod(function)
    return lambda: function
