"""How a poll waits: the one thing that differs between a thread and an event loop.

The rules of a poll (cursors, batches, the hold gate, the session store) are
written once, as a generator of *steps* (``session.py``, ``lifecycle.py``,
``transports.py``).  It yields a :class:`Wait` when it has nothing to answer
yet, a :class:`Call` when it needs a round trip to the backend, and, for a
stream, the bytes of each frame; it returns a poll's answer.  A strategy runs
the steps:

- :data:`THREADS` parks the calling thread (cheroot, gunicorn, any WSGI
  server): a held poll holds its thread, as it must there;
- :class:`Loop` awaits a future on the running event loop (``longpoll.asgi``):
  a held poll is a future, and ten thousand of them need no thread.

So a rule changed in the steps holds on every front at once.  Waking a future
from the hub's thread goes through one :class:`LoopWaker` per loop: one
publish that wakes ten thousand polls asks the loop once, not ten thousand
times.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, Protocol, TypeVar

from .budget import BUDGET

T = TypeVar("T")


class Waitable(Protocol):
    """What a poll waits on (a session): a waker armed for one poll, let go after."""

    def arm(self, ticket: int, wake: Callable[[], None]) -> bool: ...

    def disarm(self, wake: Callable[[], None]) -> None: ...


class Wait:
    """Wait until the session wakes the poll (``ticket``), or until ``deadline`` (``time.monotonic()``)."""

    __slots__ = ("session", "ticket", "deadline")

    def __init__(self, session: Waitable, ticket: int, deadline: float):
        self.session = session
        self.ticket = ticket
        self.deadline = deadline


class Batch(Protocol):
    """Many calls as one round trip (a Redis pipeline), each ``(fn, *args)`` as a Call has them: what each
    returned, or the exception it raised, in order."""

    def many(self, calls: list[tuple[Any, ...]]) -> list[Any]: ...


class Call:
    """A round trip to the backend; the steps go on with what ``fn(*args)`` returned (or raised).

    On an event loop, calls with a ``batch`` made in one turn of the loop go as one round trip, on a thread
    of the loop's executor (so a publish that wakes ten thousand polls stores their batches in one pipeline,
    and a thousand publishes arriving together append in one); a call ``off_loop`` runs alone on such a
    thread; any other call runs where the steps run (it must be quick: the embedded backend's).  On a
    thread, every call runs there, at once.
    """

    __slots__ = ("fn", "args", "batch", "off_loop")

    def __init__(self, fn: Callable[..., Any], *args: Any, batch: Batch | None = None, off_loop: bool = False):
        self.fn = fn
        self.args = args
        self.batch = batch
        self.off_loop = off_loop or batch is not None


Step = Wait | Call | bytes
Steps = Generator[Step, Any, T]
"""A poll's steps, returning its answer (a stream's steps yield frames and return None)."""


class Drive:
    """Steps advanced one at a time, each sent what the step before gave, or thrown what it raised."""

    __slots__ = ("steps", "answer", "pending")

    def __init__(self, steps: Steps[Any]):
        self.steps = steps
        self.answer: Any = None
        self.pending: Step | None = None  # the step they stopped at when they were handed over

    def first(self) -> Step | None:
        step, self.pending = self.pending, None
        return step if step is not None else self.advance()

    def advance(self, result: Any = None, error: BaseException | None = None) -> Step | None:
        """The next step; None once the steps returned (their answer in ``answer``)."""
        try:
            return self.steps.throw(error) if error is not None else self.steps.send(result)
        except StopIteration as done:
            self.answer = done.value
            return None


class Threads:
    """Waits by parking the thread that runs the steps."""

    def run(self, steps: Steps[T]) -> T:
        """The steps' answer (what a poll answers)."""
        drive = Drive(steps)
        for _ in self._frames(drive):
            pass
        return drive.answer

    def frames(self, steps: Steps[None]) -> Iterator[bytes]:
        """A stream's frames, waiting on this thread between them; closing it ends the stream's poll.  The
        server asks for the next frame once it wrote the one before: that one was taken (``budget.py``)."""
        return self._frames(Drive(steps), stream=True)

    def _frames(self, drive: Drive, stream: bool = False) -> Iterator[bytes]:
        account = BUDGET.open() if stream else None
        with contextlib.closing(drive.steps):
            try:
                step = drive.first()
                while step is not None:
                    if isinstance(step, bytes):
                        if account is not None and not BUDGET.hold(account, len(step)):
                            return
                        yield step
                        if account is not None and not BUDGET.took(account):
                            return
                        step = drive.advance()
                    else:
                        step = drive.advance(*self._do(step))
            finally:
                if account is not None:
                    BUDGET.close(account)

    @staticmethod
    def _do(step: Wait | Call) -> tuple[Any, BaseException | None]:
        if isinstance(step, Call):
            return _called(step)
        parked = threading.Lock()
        parked.acquire()
        release = parked.release  # one bound method: the session's waiter is compared by identity
        if step.session.arm(step.ticket, release):
            parked.acquire(True, max(0.0, step.deadline - time.monotonic()))
            step.session.disarm(release)
        return None, None


THREADS = Threads()


def _called(call: Call) -> tuple[Any, BaseException | None]:
    try:
        return call.fn(*call.args), None
    except Exception as exc:
        return None, exc


class Loop:
    """Waits by awaiting a future on the running event loop, woken from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.waker = LoopWaker(loop)
        self._batches: dict[Batch, list[tuple[tuple[Any, ...], asyncio.Future[Any]]]] = {}

    async def run(self, steps: Steps[T] | Drive) -> T:
        """The steps' answer; a :class:`Drive` goes on from where a :class:`Handoff` stopped it."""
        drive = steps if isinstance(steps, Drive) else Drive(steps)
        try:  # a poll's steps yield no frames: no async generator to keep while it is held
            step = drive.first()
            while step is not None:
                if isinstance(step, bytes):
                    raise TypeError("a poll's steps yield no frames (a stream's go through frames())")
                step = drive.advance(*await self._do(step))
        finally:
            drive.steps.close()
        return drive.answer

    def frames(self, steps: Steps[None], on_end: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
        """A stream's frames.  The front asks for the next one once the connection took the one before
        (``budget.py``); ``on_end()`` cuts the connection when the budget ends the stream while the front
        waits for it to take a frame (called from any thread)."""
        return self._frames(Drive(steps), stream=True, on_end=on_end)

    async def _frames(self, drive: Drive, stream: bool = False,
                      on_end: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
        account = BUDGET.open(on_end) if stream else None
        try:
            step = drive.first()
            while step is not None:
                if isinstance(step, bytes):
                    if account is not None and not BUDGET.hold(account, len(step)):
                        return
                    yield step
                    if account is not None and not BUDGET.took(account):
                        return
                    await asyncio.sleep(0)  # every other request runs between two frames
                    step = drive.advance()
                else:
                    step = drive.advance(*await self._do(step))
        finally:
            if account is not None:
                BUDGET.close(account)
            drive.steps.close()

    async def _do(self, step: Wait | Call) -> tuple[Any, BaseException | None]:
        if isinstance(step, Call):
            if not step.off_loop:
                return _called(step)
            try:
                if step.batch is None:
                    return await self.loop.run_in_executor(None, step.fn, *step.args), None
                return await self._batched(step.batch, (step.fn, *step.args)), None
            except Exception as exc:
                return None, exc
        left = step.deadline - time.monotonic()
        if left > 0:
            future: asyncio.Future[None] = self.loop.create_future()
            wake = self.waker.waking(future)
            if step.session.arm(step.ticket, wake):
                timer = self.loop.call_later(left, _resolve, future)
                try:
                    await future
                finally:
                    timer.cancel()
                    step.session.disarm(wake)
        return None, None


    def _batched(self, batch: Batch, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """This call's result, once the calls of the batch made in this turn of the loop have run."""
        future: asyncio.Future[Any] = self.loop.create_future()
        pending = self._batches.get(batch)
        if pending is None:
            pending = self._batches[batch] = []
            self.loop.call_soon(self._flush, batch)
        pending.append((args, future))
        return future

    def _flush(self, batch: Batch) -> None:
        calls = self._batches.pop(batch)
        ran = self.loop.run_in_executor(None, batch.many, [args for args, _ in calls])

        def settle(done: asyncio.Future[list[Any]]) -> None:
            error = done.exception()
            results = [error] * len(calls) if error is not None else done.result()
            for (_, future), result in zip(calls, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

        ran.add_done_callback(settle)


class Handoff:
    """Steps begun on a thread and handed to the event loop at their first wait (``longpoll.asgi``).

    The app's own requests run in a pool of threads there, through CherryPy, so that its tools and sessions
    work; a poll of it that must wait must not keep its thread.  The front puts a Handoff in
    :data:`HANDOFF` before the request goes to a thread (a2wsgi runs each request in a copy of the caller's
    context); the endpoint runs its steps with it: they go on in the thread until they answer, or stop at
    their first wait, which the front's loop takes over (:attr:`drive`).  The answer CherryPy makes for a
    request handed over so is never sent: the front sends the loop's.
    """

    __slots__ = ("drive", "stream", "headers")

    def __init__(self) -> None:
        self.drive: Drive | None = None  # a poll's steps, stopped at their first wait
        self.stream: Steps[None] | None = None  # a stream's steps, not begun: its frames all go from the loop
        self.headers: dict[str, str] = {}  # the stream's

    @property
    def handed(self) -> bool:
        return self.drive is not None or self.stream is not None

    def run(self, steps: Steps[T]) -> T | None:
        """The steps' answer, or None when they were handed over."""
        drive = Drive(steps)
        step = drive.advance()
        while isinstance(step, Call):
            step = drive.advance(*_called(step))
        if step is None:
            return drive.answer
        drive.pending = step
        self.drive = drive
        return None

    def frames(self, steps: Steps[None], headers: dict[str, str]) -> None:
        self.stream = steps
        self.headers = headers


HANDOFF: contextvars.ContextVar[Handoff | None] = contextvars.ContextVar("longpoll_handoff", default=None)
"""The handoff of the request this thread answers, under an event loop's front; None elsewhere."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LoopWaker:
    """Resolves the loop's futures from any thread, asking the loop once for all that are queued."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._queued: deque[asyncio.Future[None]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def waking(self, future: asyncio.Future[None]) -> Callable[[], None]:
        """What resolves ``future`` from any thread (a session's waiter)."""
        def wake() -> None:
            self._queued.append(future)
            with self._lock:
                if self._scheduled:
                    return
                self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        return wake

    def _resolve(self) -> None:
        with self._lock:
            self._scheduled = False
        queued = self._queued
        while queued:
            _resolve(queued.popleft())


_loops: dict[asyncio.AbstractEventLoop, Loop] = {}


def on_loop() -> Loop:
    """The running loop's strategy (one per loop: every poll it holds shares its waker)."""
    loop = asyncio.get_running_loop()
    found = _loops.get(loop)
    if found is None:
        for gone in [old for old in _loops if old.is_closed()]:
            del _loops[gone]
        found = _loops[loop] = Loop(loop)
    return found
