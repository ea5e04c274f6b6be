"""How a generator says "nothing yet" without holding a thread.

A session generator that has nothing to give yields a :class:`Signal` instead
of an item.  The session then parks the poll on its own condition variable
until the signal fires or the poll's deadline passes, and resumes the
generator afterwards.  Nothing sleeps in a loop and no thread exists per
session: whoever produces data calls :meth:`Signal.notify`, which only flips
a flag and notifies a condition in each waiting session.

A signal may also carry an ``error`` (for example the backend is down): a poll
that would wait on it answers that error instead, and the session lives on.

Yielding a signal waits, the first time as every time.  The session registers
with a signal only when the generator yields it, so a ``notify()`` between
the generator's last look at its data and that moment would be missed; every
notify therefore stamps the signal from one process-wide clock, and a signal
notified after the session began advancing the generator is looked at again
at once instead of waited on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from .errors import LongPollError

_clock = itertools.count(1)  # next() is atomic under the GIL


def now() -> int:
    """A tick of the clock signals are stamped with: a signal with a later stamp was notified since."""
    return next(_clock)


class Signal:
    """Something a generator yields to wait; producers call :meth:`notify`."""

    __slots__ = ("_waiters", "error", "stamp")

    def __init__(self) -> None:
        self._waiters: list[Callable[[], None]] = []
        self.error: LongPollError | None = None
        self.stamp = 0  # the clock's tick at the last notify

    def add_waiter(self, wake: Callable[[], None]) -> None:
        # list.append/remove are atomic under the GIL; notify iterates a copy.
        self._waiters.append(wake)

    def remove_waiter(self, wake: Callable[[], None]) -> None:
        try:
            self._waiters.remove(wake)
        except ValueError:
            pass

    def notify(self) -> None:
        """Wake every session waiting on this signal.

        Call it without holding any lock of your own: a session's wake takes the
        session's small condition lock, never anything that could block long.
        """
        self.stamp = next(_clock)
        for wake in tuple(self._waiters):
            wake()

    def fail(self, error: LongPollError | None) -> None:
        """Set (or clear, with None) the error that waiting polls answer."""
        self.error = error
        self.notify()


class _Gap:
    """What a generator yields to say its source lost items here (see :data:`GAP`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "longpoll.GAP"


GAP = _Gap()
"""Yield it from a session generator where items were lost (a trimmed log, a backend that lost
data): the next batch says ``"gap": true``, so the client knows to re-fetch what it needs."""
