"""The same sessions, streamed: Server-Sent Events and chunked JSON lines (docs/protocol.md, "Transports").

A client that can hold one response open asks for a stream with its Accept
header; everything else (the session, its filter, cursors, ``max``, ``gap``,
``dropped``) is the poll's.  A stream is a loop of polls on its session that
sends each batch as soon as it is cut, without waiting for the client to
acknowledge it: the session keeps what it sent until the client's next poll
or reconnect (SSE's ``Last-Event-ID: <key>.<cursor>``) says what arrived.

A stream holds one place at the hold gate for its whole life and counts
once against the poll rate; it sends a heartbeat when it has sent nothing
for ``PollLimits.heartbeat`` seconds (so a client that vanished is found out
within that, when the write fails), and ends after ``max_stream_seconds`` so
proxies recycle connections; clients reconnect and resume.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import orjson

from .errors import BadParameter, Expired, LongPollError, Stopping
from .lifecycle import Held, Lifecycle
from .params import CURSOR, KEY, PollLimits
from .session import DONE, RETRY_MS_WHEN_FULL, Batch, Poll
from .waits import Steps

log = logging.getLogger("longpoll")

SSE = "sse"
NDJSON = "ndjson"

CONTENT_TYPES = {SSE: "text/event-stream", NDJSON: "application/x-ndjson"}

RECONNECT_MS = 2000
"""What an SSE stream tells EventSource to wait before reconnecting (``retry:``)."""


def negotiate(accept: str | None) -> str | None:
    """The stream an Accept header asks for, or None for a long-poll (what it cannot serve falls back)."""
    if not accept:
        return None
    wanted = {part.split(";", 1)[0].strip().lower(): part for part in accept.split(",")}
    for transport, content_type in CONTENT_TYPES.items():
        part = wanted.get(content_type)
        if part is not None and "q=0" not in part.replace(" ", "").replace("q=0.", "q=x"):
            return transport
    return None


def last_event_id(value: str | None) -> tuple[str, str] | None:
    """``<key>.<cursor>`` from a Last-Event-ID header; 400 naming it when malformed."""
    if value is None or value == "":
        return None
    key, dot, cursor = value.partition(".")
    if not dot or not KEY.fullmatch(key) or not CURSOR.fullmatch(cursor):
        raise BadParameter("Last-Event-ID", "must be <key>.<cursor> as the stream's events carry them")
    return key, cursor


def headers(transport: str) -> dict[str, str]:
    # SSE is UTF-8 by definition; the charset is what CherryPy's encode tool writes for text/*, so both fronts agree
    content_type = CONTENT_TYPES[transport] + (";charset=utf-8" if transport == SSE else "")
    return {"Content-Type": content_type, "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"}  # nginx: pass each event on as it comes


class Framing:
    """How a transport writes batches, heartbeats and its end."""

    def __init__(self, transport: str):
        self.sse = transport == SSE

    def start(self, retry_ms: int = RECONNECT_MS) -> bytes:
        return b"retry: %d\n\n" % retry_ms if self.sse else b""

    def batch(self, key: str, batch: Batch, **extra: Any) -> bytes:
        body = orjson.dumps({**batch.to_json(key), **extra})
        if not self.sse:
            return body + b"\n"
        event = b"event: done\n" if batch.state == DONE else b""
        return event + b"id: " + key.encode() + b"." + batch.cursor.encode() + b"\ndata: " + body + b"\n\n"

    def heartbeat(self) -> bytes:
        return b": ping\n\n" if self.sse else b"\n"

    def error(self, exc: LongPollError) -> bytes:
        body = orjson.dumps({**exc.body(), "status": exc.status})
        if not self.sse:
            return body + b"\n"
        # A stopping server's last event is not an "error": EventSource (and a loop that gives up on the server's
        # own error events) reconnects by itself, here or elsewhere, with Last-Event-ID, and resumes.
        name = b"expired" if isinstance(exc, Expired) else b"stopping" if isinstance(exc, Stopping) else b"error"
        return b"event: " + name + b"\ndata: " + body + b"\n\n"

    def refused(self, key: str, batch: Batch) -> bytes:
        """The hold gate is full: the batch a poll without waiting got, and come back later (SSE: after
        ``retry``, with the batch's id, so EventSource resumes this session; lines: as a poll says it)."""
        # retry_ms in the data too, for clients that reconnect by themselves
        return (self.start(RETRY_MS_WHEN_FULL) if self.sse else b"") + self.batch(key, batch,
                                                                             retry_ms=RETRY_MS_WHEN_FULL)


class StreamRun:
    """One stream's course: which poll comes next, and what each batch makes of it.

    A new session's first batch is sent at once even when empty, so the client has its key (the event id)
    before anything arrives.  The first poll acknowledges what the client says it has (its cursor); the
    ones after it keep what they send until the client's next reconnect or poll.  The stream ends when the
    session is done, another poll takes over, the server stops, or it has lasted ``max_stream_seconds``
    (and when the client is gone: a write fails and the server closes it).  Its new items count as delivered
    once the connection took their frame: nothing counts what went into a connection already gone, and a
    stream the budget ends (``budget.py``) has acknowledged nothing its client did not get.
    """

    def __init__(self, lifecycle: Lifecycle, held: Held, poll: Poll, limits: PollLimits, transport: str):
        self.lifecycle = lifecycle
        self.held = held
        self.poll = poll
        self.limits = limits
        self.framing = Framing(transport)
        self.new = held.new
        self.first = True
        self.owned: int | None = None  # the stream's ticket on its session, from its first poll on
        self.sent = self.began = time.monotonic()
        self.ends = self.began + limits.max_stream_seconds
        self.fresh = 0  # new items in the frame :meth:`took` made: delivered once the connection takes it

    def delivered(self) -> None:
        """The connection took the frame (the front asked for the next one): its new items count."""
        if self.fresh:
            self.lifecycle.registry.delivered(self.fresh)
            self.fresh = 0

    def next_poll(self) -> Poll | None:
        """The stream's next poll, or None when it ends now."""
        now = time.monotonic()
        if self.lifecycle.registry.stopping or now >= self.ends:
            return None
        wait = 0.0 if self.first and self.new else max(0.0, min(self.sent + self.limits.heartbeat, self.ends) - now)
        return replace(self.poll, timeout=wait, placed=True, keep=not self.first, follow=self.owned, streamed=True)

    def took(self, batch: Batch) -> tuple[bytes, bool]:
        """What a batch makes the stream send (a frame, a heartbeat, nothing), and whether it ends."""
        if batch.released:
            return b"", True  # a newer poll or stream of this session took over
        self.owned = batch.ticket
        out = b""
        ended = False
        self.fresh = 0
        if batch.count or batch.gap or batch.state == DONE or (self.first and self.new):
            out = self.framing.batch(self.held.session.key, batch)
            self.fresh = batch.count if batch.fresh else 0
            self.poll.cursor = batch.cursor
            self.sent = time.monotonic()
            ended = batch.state == DONE
        elif time.monotonic() - self.sent >= self.limits.heartbeat - 0.01:
            out = self.framing.heartbeat()
            self.sent = time.monotonic()
        self.first = False
        return out, ended


def stream(lifecycle: Lifecycle, held: Held, poll: Poll, limits: PollLimits, transport: str) -> Steps[None]:
    """A stream's frames (see :class:`StreamRun`).  It holds one place at the hold gate for its whole life;
    when the gate is full it answers as a poll that may not wait (what is ready now, which also starts a new
    session's generator, so nothing published before the client comes back is missed), then "come back
    later"."""
    run = StreamRun(lifecycle, held, poll, limits, transport)
    gate = poll.gate
    if gate is not None and not gate.enter():
        try:
            batch = yield from lifecycle.take(held, replace(poll, timeout=0.0, placed=True, streamed=True),
                                              again=False)
            if not batch.released:
                yield run.framing.refused(held.session.key, batch)
                if batch.fresh:
                    lifecycle.registry.delivered(batch.count)
        except LongPollError as exc:
            yield run.framing.start() + run.framing.error(exc)
        return
    try:
        yield run.framing.start()
        while (asked := run.next_poll()) is not None:
            try:
                out, ended = run.took((yield from lifecycle.take(held, asked, again=False, admit=False)))
            except Stopping as exc:
                yield run.framing.error(exc)  # clients reconnect, here or elsewhere, and resume
                return
            except LongPollError as exc:
                yield run.framing.error(exc)
                return
            if out:
                yield out
                run.delivered()
            if ended:
                return
        if lifecycle.registry.stopping:
            yield run.framing.error(Stopping())
    finally:
        if gate is not None:
            gate.leave()


def expired(exc: Expired) -> tuple[int, dict[str, str], bytes]:
    """An SSE stream whose key is unknown or expired starts, says ``event: expired`` and ends (docs/protocol.md)."""
    framing = Framing(SSE)
    return 200, headers(SSE), framing.start() + framing.error(exc)
