"""Every reach of ``longpoll serve`` into granian's private parts (and CherryPy's class defaults), in one
place, each checked when the server starts.

granian 2.8 has two defects in how its workers stop (a second stop signal
hangs a worker; a stop that reaches a worker before the main process is taken
for a crash), patched below, and CherryPy answers requests it has no app for
from ``Request``'s class defaults, set below for the product's process.  Each
patch names what it relies on; :func:`check` fails the start, naming
granian's version, when one of those is gone (the library's own reaches are
``longpoll.compat``'s).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from ..compat import refuse


def check() -> None:
    """Fail now, saying why, if the installed granian no longer has what the patches below rely on."""
    from granian import _signals
    from granian.server import common

    if not (callable(getattr(_signals, "set_loop_signals", None)) and callable(getattr(_signals, "_get_signals",
                                                                                        None))):
        raise refuse("granian", "granian._signals.set_loop_signals and _get_signals (a worker's stop signals)")
    watcher = getattr(common.AbstractWorker, "_watcher", None)
    source = inspect.getsource(common)
    if watcher is None or not all(name in source for name in ("interrupt_by_parent", "main_loop_interrupt",
                                                                "interrupt_signal")):
        raise refuse("granian", "AbstractWorker._watcher, interrupt_by_parent, main_loop_interrupt and "
                                 "interrupt_signal (how the main process tells a worker's stop from a crash)")


def stop_once() -> None:
    """A granian 2.8 worker hangs on a second stop signal: its handler sends to a channel that holds one
    message, and nothing reads a second.  A worker gets two whenever something signals the whole process
    group (systemd's default, a ``kill`` of the group) besides granian's own main process, and then waits
    out --workers-kill-timeout.  Workers (forked, they see this) set the stop once."""
    from granian import _signals

    original = _signals.set_loop_signals
    if getattr(original, "longpoll_once", False):
        return

    def set_loop_signals(loop: asyncio.AbstractEventLoop) -> object:
        event = original(loop)
        first = event.set
        done: list[bool] = []

        class Once:
            def __getattr__(self, name: str) -> object:
                return getattr(event, name)

            def set(self) -> None:
                if not done:
                    done.append(True)
                    first()

        once = Once()
        for number in _signals._get_signals():
            loop.remove_signal_handler(number)
            loop.add_signal_handler(number, once.set)
        return event

    set_loop_signals.longpoll_once = True  # type: ignore[attr-defined]
    _signals.set_loop_signals = set_loop_signals


GROUP_STOP_GRACE = 2.0
"""Seconds granian's main process has, after a worker stopped cleanly, to take its own stop signal."""


def stops_reach_workers_first() -> None:
    """A stop signal to the whole process group (systemd's default KillMode, ``kill -- -PGID``, Ctrl-C in a
    terminal) reaches granian 2.8's workers as well as its main process, and on a busy machine a worker can
    be done before the main process has acted on its own copy: granian then reports a crash, and exits 1
    or starts the worker again.  A worker that exited cleanly was told to stop, so its watcher gives the main
    process a moment to take the same signal first.  Watchers block the stop signals, so that the kernel
    hands them to the main thread, the one that acts on them."""
    import signal

    from granian.server.common import AbstractWorker

    original = AbstractWorker._watcher
    if getattr(original, "longpoll_patient", False):
        return

    def _watcher(self: Any) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        self.inner.join()
        if self.inner.exitcode == 0 and not self.interrupt_by_parent:
            self.parent.main_loop_interrupt.wait(GROUP_STOP_GRACE)  # the main's handler sets interrupt_signal, then it
            if self.parent.interrupt_signal:
                return  # the server stops: not a crash
        original(self)

    _watcher.longpoll_patient = True  # type: ignore[attr-defined]
    AbstractWorker._watcher = _watcher  # type: ignore[method-assign]
