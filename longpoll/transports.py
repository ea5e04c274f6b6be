"""The same sessions, streamed: Server-Sent Events and chunked JSON lines (PROTOCOL.md, "Transports").

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
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from .errors import BadParameter, Expired, LongPollError, Stopping
from .params import CURSOR, KEY, PollLimits
from .session import DONE, RETRY_MS_WHEN_FULL, Batch, Poll

if TYPE_CHECKING:
    from .endpoint import Polls

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
        name = b"expired" if isinstance(exc, Expired) else b"error"
        return b"event: " + name + b"\ndata: " + body + b"\n\n"

    def refused(self, key: str, batch: Batch) -> bytes:
        """The hold gate is full: the batch a poll without waiting got, and come back later (SSE: after
        ``retry``, with the batch's id, so EventSource resumes this session; lines: as a poll says it)."""
        # retry_ms in the data too, for clients that reconnect by themselves
        return (self.start(RETRY_MS_WHEN_FULL) if self.sse else b"") + self.batch(key, batch,
                                                                             retry_ms=RETRY_MS_WHEN_FULL)


def stream(polls: Polls, poll: Poll, limits: PollLimits, transport: str) -> Iterator[bytes]:
    """The body of a stream: frames until the session is done, another poll takes over, the server stops,
    the stream has lasted ``max_stream_seconds``, or the client is gone (a write fails and the server closes
    this).

    A new session's first batch is sent at once even when empty, so the client has its key (the event id)
    before anything arrives.  The first poll acknowledges what the client says it has (its cursor); the
    ones after it keep what they send until the client's next reconnect or poll.
    """
    framing = Framing(transport)
    registry = polls.registry
    gate = poll.gate
    if gate is not None and not gate.enter():
        # Answered as a poll that may not wait is: what is ready now (which also starts a new session's
        # generator, so nothing published before the client comes back is missed), then "come back".
        try:
            batch = polls.take(replace(poll, timeout=0.0, gate=None))
        except LongPollError as exc:
            yield framing.start() + framing.error(exc)
            return
        if not batch.released:
            yield framing.refused(polls.session.key, batch)
        return
    new = polls.new
    try:
        yield framing.start()
        began = sent = time.monotonic()
        ends = began + limits.max_stream_seconds
        first = True
        owned: int | None = None  # the stream's ticket on its session, from its first poll on
        while not registry.stopping:
            # Let every other request run between two frames: a stream of a generator that is always ready
            # otherwise computes and writes until its socket's buffer is full (megabytes), and 20 such
            # streams held up a /stats for 30 s.  (Under gevent this is a switch; under threads, the GIL.)
            time.sleep(0)
            now = time.monotonic()
            if now >= ends:
                return
            wait = 0.0 if first and new else max(0.0, min(sent + limits.heartbeat, ends) - now)
            try:
                batch = polls.take(replace(poll, timeout=wait, gate=None, keep=not first, follow=owned))
            except Stopping:
                return  # clients reconnect, here or elsewhere, and resume
            except LongPollError as exc:
                yield framing.error(exc)
                return
            if batch.released:
                return  # a newer poll or stream of this session took over
            owned = batch.ticket
            if batch.count or batch.gap or batch.state == DONE or (first and new):
                yield framing.batch(polls.session.key, batch)
                poll.cursor = batch.cursor
                sent = time.monotonic()
                if batch.state == DONE:
                    return
            elif time.monotonic() - sent >= limits.heartbeat - 0.01:
                yield framing.heartbeat()
                sent = time.monotonic()
            first = False
    finally:
        if gate is not None:
            gate.leave()


def refused_before(transport: str, exc: LongPollError) -> tuple[int, dict[str, str], Any] | None:
    """An SSE stream whose key is unknown or expired starts, says ``event: expired`` and ends (PROTOCOL.md);
    other errors before a stream starts answer as a poll would."""
    if transport == SSE and isinstance(exc, Expired):
        framing = Framing(transport)
        return 200, headers(transport), iter([framing.start(), framing.error(exc)])
    return None
