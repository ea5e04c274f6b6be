"""``longpoll.asgi(app)``: a CherryPy app served by an ASGI server, its polls held on the event loop.

Under cheroot a held poll holds a thread; here it holds a future.  The app
itself is CherryPy's, unchanged: its requests run in a pool of threads through
a WSGI bridge (a2wsgi), with their tools, sessions and config, and its
engine (the longpoll plugin, hubs, expiry) runs with the ASGI lifespan.  What
moves to the loop is the waiting:

- a poll that continues a session, of an endpoint that needs nothing of
  CherryPy's request (``routes.py``), is answered on the loop altogether: its
  batch is taken there, and while it has none it waits there;
- any other poll runs in a thread as usual; if it would wait (its first
  batch is empty), its steps are handed to the loop (``waits.Handoff``) and
  the thread goes back to the pool;
- streams (SSE, JSON lines) send their frames from the loop.

Generators therefore run on the loop's thread for continuation polls, and on
a pool thread for first polls: as everywhere, they must not block (they
yield a Signal, or draw from a feed, to wait).

Serve it with granian (``longpoll serve`` does), uvicorn or hypercorn::

    app = longpoll.asgi(cherrypy.tree)        # granian --interface asgi module:app
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import cherrypy

from . import compat, plugin, responses
from . import config as lpconfig
from .errors import BadRequest, LongPollError, PayloadTooLarge, RequestTimeout
from .plugin import SIGNALS
from .responses import JSON_HEADERS, Answer
from .routes import Routes, decide
from .waits import HANDOFF, Handoff, on_loop

log = logging.getLogger("longpoll")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Callable[[Scope], list[tuple[str, str]]]

THREADS = 64
"""Threads the app's own requests run in (a held poll never keeps one)."""

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body read (on the loop, before a thread is taken); larger ones answer 413."""

READ_TIMEOUT = 10.0
"""Seconds a request body may take to arrive; a body that stalls answers 408."""

STOP_TIMEOUT = 10.0
"""Seconds a stop waits for the app's requests still running in threads before the engine stops."""


def asgi(app: Any = None, *, threads: int = THREADS, max_body_bytes: int = MAX_BODY_BYTES,
         read_timeout: float = READ_TIMEOUT, headers: Headers | None = None, routes: Routes | None = None,
         engine: bool = True, on_started: Callable[[], Awaitable[None]] | None = None,
         stop_timeout: float = STOP_TIMEOUT) -> ASGIFront:
    """An ASGI application serving the WSGI ``app`` (default ``cherrypy.tree``) with held polls on the loop.

    ``threads`` run the app's requests.  Every request body is read on the
    loop first, whole, at most ``max_body_bytes`` (413 past it) within
    ``read_timeout`` seconds (408), so a slow or oversized body never holds a
    thread.  ``headers(scope)`` adds headers to the answers made on the loop
    (CORS, say); ``routes`` says which endpoints those are (default: every
    eligible one in ``cherrypy.tree``, found at startup).  With ``engine``
    (the default) the ASGI lifespan starts and stops ``cherrypy.engine``, and
    a stop signal answers held polls before the server waits for them;
    ``on_started()`` is awaited once the engine runs.  At a stop, requests still in the app's threads get
    ``stop_timeout`` seconds to finish first: granian ends the lifespan once its clients have their
    answers, and a thread that still has to hand a last message to the loop after the loop is gone would
    keep the process from exiting.
    """
    return ASGIFront(app, threads=threads, max_body_bytes=max_body_bytes, read_timeout=read_timeout,
                     headers=headers, routes=routes, engine=engine, on_started=on_started,
                     stop_timeout=stop_timeout)


class ASGIFront:
    def __init__(self, app: Any, *, threads: int, max_body_bytes: int, read_timeout: float, headers: Headers | None,
                 routes: Routes | None, engine: bool, on_started: Callable[[], Awaitable[None]] | None,
                 stop_timeout: float):
        try:
            from a2wsgi import WSGIMiddleware
        except ImportError as exc:
            raise ImportError("longpoll.asgi needs a2wsgi: pip install 'longpoll[asgi]'") from exc

        self.app = app if app is not None else cherrypy.tree
        self.bridge: Any = WSGIMiddleware(self.app, workers=threads)  # it types scopes as TypedDicts; ours are mappings
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.headers = headers
        self.routes = routes
        self.engine = engine
        self.on_started = on_started
        self.answered = 0  # polls answered on the loop without CherryPy
        self.stop_timeout = stop_timeout
        self._in_threads = 0  # requests the app is answering in the bridge's threads
        self._drained: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets: not this library's
            await send({"type": "websocket.close", "code": 1000})

    # -- the engine --------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await compat.check_a2wsgi()  # how a poll that must wait reaches the loop
                    if self.engine:
                        lpconfig.check_tree()  # a bad setting fails the startup, said, before the engine's start
                        cherrypy.server.unsubscribe()  # the ASGI server serves: no cheroot
                        plugin.ensure(cherrypy.engine)
                        await loop.run_in_executor(None, cherrypy.engine.start)
                        # Servers wait for every request before they tell the app they stop: held polls
                        # must answer on the signal itself, which only this (the main) thread may catch.
                        cherrypy.engine.publish(SIGNALS)
                    if self.routes is None:
                        self.routes = Routes().discover()
                    if self.on_started is not None:
                        asyncio.ensure_future(self.on_started())
                except Exception as exc:
                    log.exception("starting the CherryPy engine failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._drain()
                if self.engine:
                    # the plugin answers held polls and ends streams first (503 with retry_ms), then stops
                    await loop.run_in_executor(None, cherrypy.engine.exit)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- a request -----------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("http_version") != "1.1":
            send = _versioned(scope, send)
        client = scope.get("client") or ("", 0)
        found = decide(self.routes, scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
                       _headers(scope), client[0], self.max_body_bytes)
        raw = None
        if found is not None and found.body_needed:
            raw, error = await _read(receive, found.length, self.read_timeout)
            if error is not None:
                await self._send(scope, receive, send, *responses.error(error))
                return
            receive = _replaying(raw, receive)  # for the app, if it is not a continuation after all
        steps = found.answer(raw) if found is not None else None
        if steps is not None:
            self.answered += 1
            answer = await on_loop().run(steps)
        else:
            if raw is None:
                receive, refused = await self._body_first(scope, receive)
                if refused is not None:
                    await self._send(scope, receive, send, *refused)
                    return
            through = await self._through_app(scope, receive, send)
            if through is None:
                return  # the app answered, and a2wsgi sent it
            answer = through
        await self._send(scope, receive, send, *answer)

    async def _body_first(self, scope: Scope, receive: Receive) -> tuple[Receive, Answer | None]:
        """Read a request's body on the loop, whole, before the app's thread is taken; the app reads it from
        memory then.  A body too large is 413 at once; one that stalls, 408."""
        request_headers = _headers(scope)
        length = request_headers.get("content-length")
        if scope["method"] in ("GET", "HEAD") and not length and "transfer-encoding" not in request_headers:
            return receive, None
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return receive, responses.error(PayloadTooLarge(
                f"the request body may be at most {self.max_body_bytes} bytes"))
        raw, error = await _read(receive, self.max_body_bytes, self.read_timeout)
        if error is not None:
            return receive, responses.error(error)
        return _replaying(raw, receive), None

    async def _through_app(self, scope: Scope, receive: Receive, send: Send) -> Answer | None:
        """The app answers in a thread; a poll that would wait there, or a stream, is handed to the loop
        (``waits.Handoff``), and CherryPy's answer for it is not sent: what the loop answers is returned.
        None when the app's answer was sent."""
        handoff = Handoff()
        token = HANDOFF.set(handoff)  # a2wsgi runs the request in a copy of this context

        async def sending(message: Message) -> None:
            if not handoff.handed:  # handed over before the app's thread made its answer, so before this
                await send(message)

        self._in_threads += 1
        try:
            await self.bridge(scope, receive, sending)
        finally:
            HANDOFF.reset(token)
            self._in_threads -= 1
            if not self._in_threads and self._drained is not None:
                self._drained.set()
        if handoff.drive is not None:
            answer: Answer = await on_loop().run(handoff.drive)
            return answer
        if handoff.stream is not None:
            return 200, handoff.headers, handoff.stream
        return None

    async def _drain(self) -> None:
        """Let the app's threads finish what they began while the loop they send through still runs."""
        if not self._in_threads:
            return
        self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), self.stop_timeout)
        except asyncio.TimeoutError:
            log.warning("stopping with %d requests still running in the app's threads after %s s",
                        self._in_threads, self.stop_timeout)

    async def _send(self, scope: Scope, receive: Receive, send: Send, status: int, headers: dict[str, str],
                    body: Any) -> None:
        """An answer: bytes, or a stream's steps, whose frames go out from the loop as they are made."""
        out = list(_JSON_OUT) if headers is JSON_HEADERS else _encoded(headers)
        if self.headers is not None:
            out += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers(scope)]
        if isinstance(body, bytes):
            out.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        await send({"type": "http.response.start", "status": status, "headers": out})
        await _stream(body, receive, send)


HTTP_VERSIONS = {"1": "1.0", "1.0": "1.0", "2": "2.0", "2.0": "2.0", "3": "3.0", "3.0": "3.0"}
"""What ASGI servers say of a request's HTTP version, as ``major.minor``: granian says ``"1"`` for HTTP/1.0,
which a2wsgi passes on as ``SERVER_PROTOCOL = "HTTP/1"`` and CherryPy, reading its minor version at
``[7]``, answered with a 500 to every HTTP/1.0 request (nginx's default proxy speaks HTTP/1.0)."""


def _versioned(scope: Scope, send: Send) -> Send:
    """The request's version said as ``major.minor`` whatever the server said (a version it cannot name is
    taken for 1.0, which asks the least of an answer); under HTTP/1.0 every answer says ``Connection:
    close`` unless the client asked to keep the connection (the server closes it after the answer anyway:
    a stream's end, without chunked framing, is the connection's end)."""
    version = scope["http_version"] = HTTP_VERSIONS.get(str(scope.get("http_version")), "1.0")
    if version != "1.0" or "keep-alive" in _headers(scope).get("connection", "").lower():
        return send

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start" and \
                not any(name.lower() == b"connection" for name, _ in message.get("headers", ())):
            message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
        await send(message)

    return closing


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


_JSON_OUT = tuple(_encoded(JSON_HEADERS))  # nearly every answer's: encoded once


def _headers(scope: Scope) -> dict[str, str]:
    found = scope.get("longpoll.headers")
    if found is None:
        found = scope["longpoll.headers"] = {name.decode("latin-1"): value.decode("latin-1")
                                             for name, value in scope.get("headers", ())}
    return found


async def _read(receive: Receive, largest: int, timeout: float) -> tuple[bytes, LongPollError | None]:
    """A body, whole: at most ``largest`` bytes, within ``timeout`` seconds.  A body that breaks off (a bad
    chunk, a client gone) is a 400."""
    parts: list[bytes] = []
    got = 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            return b"", RequestTimeout("the request body did not arrive in time")
        if message["type"] == "http.disconnect":
            return b"", BadRequest("the request body broke off before its end")
        chunk = message.get("body", b"")
        got += len(chunk)
        if got > largest:
            return b"", PayloadTooLarge(f"the request body may be at most {largest} bytes")
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts), None


def _replaying(raw: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then what the client sends next (its disconnect)."""
    given = [False]

    async def again() -> Message:
        if not given[0]:
            given[0] = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return again


async def _stream(steps: Any, receive: Receive, send: Send) -> None:
    """Send a stream's frames as they are made; stop as soon as the client is known to be gone, or the
    stream budget ends the stream (``budget.py``: a send its client does not take is given up, and the
    server closes the connection).  The next frame is asked for only once the connection took this one.

    A client gone is known by ``http.disconnect``, or by an OSError from ``send`` (ASGI 2.4).  granian (ASGI
    2.3) tells neither while a response streams: its ``send`` to a closed connection returns as if it
    wrote, and a ``receive`` begun before the client left never returns; one begun after says
    ``http.disconnect`` at once.  So a new ``receive`` is begun after every frame, and the frame counts as
    taken only if it does not say the client is gone.  The request's own message is received first: granian
    takes a ``receive`` cancelled while it hands that message over for the client's leaving."""
    if (await receive())["type"] == "http.disconnect":
        steps.close()
        return
    loop = asyncio.get_running_loop()
    cut: asyncio.Future[None] = loop.create_future()

    def cutting() -> None:  # the budget ended the stream (from any thread)
        try:
            loop.call_soon_threadsafe(_resolve, cut)
        except RuntimeError:  # the loop is closed: the stream is gone with it
            pass

    frames = on_loop().frames(steps, on_end=cutting)
    iterator = frames.__aiter__()
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        while True:
            step = asyncio.ensure_future(iterator.__anext__())
            if not await _before(step, gone, cut):
                return  # the client went, or the budget ended the stream: its poll ends (its finally runs)
            try:
                frame = step.result()
            except StopAsyncIteration:
                break
            sending = asyncio.ensure_future(send({"type": "http.response.body", "body": frame, "more_body": True}))
            if not await _before(sending, gone, cut):
                return
            sending.result()
            gone.cancel()
            gone = asyncio.ensure_future(_disconnected(receive))
            await asyncio.sleep(0)  # a receive begun after a client left says so in this turn (granian)
            if gone.done():
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass  # the client went away mid-write
    finally:
        gone.cancel()
        await frames.aclose()  # type: ignore[attr-defined]


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _before(task: asyncio.Future[Any], *stops: asyncio.Future[Any]) -> bool:
    """Whether ``task`` finished before any of ``stops`` did; if not, it is cancelled and has ended."""
    if not any(stop.done() for stop in stops):
        await asyncio.wait({task, *stops}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not any(stop.done() for stop in stops):
        return True
    task.cancel()
    await asyncio.wait({task})
    return False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
