"""The gunicorn worker ``longpoll serve`` runs: gevent's own WSGI server, hardened.

A held poll under gevent costs a greenlet, not a thread, so one process
holds tens of thousands.  gunicorn's ``gevent`` worker parses HTTP itself
and answers about 4,000 trivial requests a second here; gevent's pywsgi,
which its ``gevent_pywsgi`` worker runs, is faster once two things are
fixed: it writes the status line and headers in one send and the body in
another (Nagle's algorithm then holds the second for ~40 ms on a kept-alive
connection), and it never times out a client.  This handler:

- sends headers and body in one write, with TCP_NODELAY;
- times out idle keep-alive connections, and reads of a request's line,
  headers and body (a body shorter than its Content-Length answers 408
  instead of waiting forever; slow senders cannot hold a greenlet for good);
- answers every error it produces itself (malformed request line, bad
  chunked framing, a request line too long) in PROTOCOL.md's JSON shape, with
  one log line rather than a traceback;
- closes, rather than reads to the end, a body nobody read (a 413's).

This module imports gevent and gunicorn only: gunicorn's arbiter imports the
worker class before any worker patches the standard library, and CherryPy's
thread-locals must be made after that (they are, when the app is loaded).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from email.utils import formatdate

import gevent
from gevent import pywsgi
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

log = logging.getLogger("longpoll")

pywsgi.MAX_REQUEST_LINE = 64 * 1024
"""gevent's 8 KiB would refuse (414) a stream's filter given in the query string, as EventSource must."""

SETTINGS_ENV = "LONGPOLL_SERVE_SETTINGS"
MAX_DISCARD = 64 * 1024
"""Unread body bytes worth reading past to keep the connection; beyond, it is closed instead."""

REASONS = {400: "bad request", 408: "the request did not arrive in time", 414: "the request line is too long",
           431: "the request's headers are too large", 500: "internal error; the server log has the details"}
CODES = {400: "bad_request", 408: "request_timeout", 414: "uri_too_long", 431: "request_header_fields_too_large",
         500: "internal"}
PHRASES = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large",
           500: "Internal Server Error"}


def json_error(status: int, message: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    body = json.dumps({"error": CODES[status], "message": message or REASONS[status]}).encode()
    return (f"{status} {PHRASES[status]}", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                            ("Connection", "close"), ("Content-Length", str(len(body)))], body)


def raw_response(status: int, message: str | None = None) -> bytes:
    line, headers, body = json_error(status, message)
    return (f"HTTP/1.1 {line}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode() + body


class RequestBodyError(Exception):
    """Reading the body failed: ``status`` (400 or 408) says how to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class GuardedInput(pywsgi.Input):
    """The request body, turning the ways it can break into HTTP answers."""

    __slots__ = ("handler",)

    def read(self, length: int | None = None) -> bytes:
        return self._guard(super().read, length)

    def readline(self, size: int | None = None) -> bytes:
        return self._guard(super().readline, size)

    def _guard(self, read, *args):  # type: ignore[no-untyped-def]
        try:
            return read(*args)
        except TimeoutError:
            raise self._failed(408, "the request body did not arrive in time") from None
        except (OSError, ValueError) as exc:  # a short body, bad chunk framing (gevent's _InvalidClientInput)
            raise self._failed(400, f"malformed request body: {str(exc)[:100]}") from None

    def _failed(self, status: int, message: str) -> Exception:
        self.handler.close_connection = True  # the connection's framing is lost: no next request on it
        self.handler.log_error("(from %s) %s", self.handler.client_address[0], message)
        try:
            import cherrypy  # only ever imported here once the app, and so CherryPy, is loaded
        except ImportError:  # pragma: no cover
            return RequestBodyError(status, message)
        error = cherrypy.HTTPError(status, message)
        error.longpoll_status = status  # type: ignore[attr-defined]
        return error

    def _discard(self) -> None:
        remaining = (self.content_length or 0) - self.position
        if self.handler.close_connection or self.chunked_input or remaining > MAX_DISCARD:
            self.handler.close_connection = True  # closing is cheaper than reading what nobody wants
            return
        try:
            super()._discard()
        except (OSError, ValueError):
            self.handler.close_connection = True


READ_BUFFER = 1024
"""Bytes a connection's reader buffers: a poll's request fits; gevent's 8 KiB per connection, held by each
of 10,000 waiting polls, was a fifth of their memory."""

MAX_HEADERS = 100
MAX_HEADER_LINE = 65536


class Headers:
    """A request's headers as pywsgi asks for them, read straight off the connection.

    http.client's parser (through the email package) took 5-9% of a loaded
    worker and kept a Message object for the life of a held poll; this keeps a
    list of pairs.  A line without a colon is a 400, not silently dropped.
    """

    __slots__ = ("pairs", "status")

    def __init__(self, rfile: object) -> None:
        self.status = ""
        self.pairs: list[list[str]] = []
        while True:
            line = rfile.readline(MAX_HEADER_LINE + 1)  # type: ignore[attr-defined]
            if len(line) > MAX_HEADER_LINE:
                self.status = "Line too long"
                return
            if line in (b"\r\n", b"\n", b""):
                return
            text = line.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and self.pairs:  # an obsolete folded continuation
                self.pairs[-1][1] += " " + text.strip()
                continue
            name, colon, value = text.partition(":")
            if not colon or not name or name != name.strip():
                raise ValueError(f"malformed header line: {text[:60]!r}")
            if len(self.pairs) >= MAX_HEADERS:
                raise ValueError(f"got more than {MAX_HEADERS} headers")
            self.pairs.append([name, value.strip()])

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self.pairs:
            if key.lower() == wanted:
                return value
        return default

    getheader = get

    def __delitem__(self, name: str) -> None:
        wanted = name.lower()
        self.pairs = [pair for pair in self.pairs if pair[0].lower() != wanted]

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")

    @property
    def headers(self) -> list[str]:
        """As pywsgi builds the environ from them."""
        return [f"{key}: {value}\r\n" for key, value in self.pairs]

    def items(self) -> list[tuple[str, str]]:
        return [(key, value) for key, value in self.pairs]


_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The Date header's value, made once a second rather than once a response."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


class Handler(PyWSGIHandler):
    """gevent's pywsgi handler with the fixes in this module's docstring."""

    read_timeout = 10.0
    keep_alive = 75.0
    access_log = False

    def __init__(self, sock: socket.socket, address: object, server: object) -> None:
        super().__init__(sock, address, server, rfile=sock.makefile("rb", READ_BUFFER))

    def MessageClass(self, fp: object, *args: object) -> Headers:  # noqa: N802 (pywsgi's name)
        return Headers(fp)

    def handle(self) -> None:
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a UNIX socket
        super().handle()

    def read_requestline(self) -> str:
        self.socket.settimeout(self.keep_alive)  # between requests: how long a kept-alive client may idle
        try:
            return super().read_requestline()
        finally:
            if self.socket is not None:
                self.socket.settimeout(self.read_timeout)  # within a request: each read of it

    def read_request(self, raw_requestline: str) -> bool:
        # The whole head in read_timeout, not just each read: a client sending a byte at a time cannot hold on.
        # A head already read whole (a poll's arrives in one packet) needs no timer.
        buffered = self.rfile.peek(0) if raw_requestline.endswith("\n") else b""
        if b"\r\n\r\n" in buffered or buffered.startswith(b"\r\n"):
            return super().read_request(raw_requestline)
        with gevent.Timeout(self.read_timeout, TimeoutError("the request's headers did not arrive in time")):
            return super().read_request(raw_requestline)

    def finalize_headers(self) -> None:
        if self.provided_date is None:
            self.response_headers.append((b"Date", http_date()))
            self.provided_date = True
        super().finalize_headers()

    def handle_one_request(self):  # type: ignore[no-untyped-def]
        result = super().handle_one_request()
        if isinstance(result, tuple):  # gevent's own plain-text error responses
            status = int(str(result[0])[:3])
            return str(status), raw_response(status, getattr(self, "_client_error", None))
        return result

    def _handle_client_error(self, ex: BaseException):  # type: ignore[no-untyped-def]
        status = 408 if isinstance(ex, TimeoutError) else 400
        message = getattr(ex, "formatted_message", None) or str(ex) or type(ex).__name__
        self.log_error("(from %s) invalid request: %s", self.client_address[0] if self.client_address else "?",
                       message[:200])
        self._client_error = REASONS[status] if status == 408 else f"malformed request: {message[:100]}"
        return str(status), raw_response(status, self._client_error)

    def _send_error_response_if_possible(self, error_code: int) -> None:
        if self.response_length:
            self.close_connection = True
            return
        status, headers, body = json_error(error_code)
        try:
            self.start_response(status, headers[:])
            self.write(body)
        except OSError:
            self.close_connection = True

    def get_environ(self):  # type: ignore[no-untyped-def]
        env = super().get_environ()
        given = self.wsgi_input
        guarded = GuardedInput(given.rfile, given.content_length, socket=given.socket,
                               chunked_input=given.chunked_input)
        guarded.handler = self
        if env.get("wsgi.input") is given:
            env["wsgi.input"] = guarded
        self.wsgi_input = guarded
        return env

    def _write_with_headers(self, data: bytes) -> None:
        """Status line, headers and the first body bytes in one send (one packet: no Nagle delay)."""
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for header, value in self.response_headers:
            out += header
            out += b": "
            out += value
            out += b"\r\n"
        out += b"\r\n"
        if data:
            if self.response_use_chunked:
                out += b"%x\r\n" % len(data)
                out += data
                out += b"\r\n"
            else:
                out += data
        self._sendall(out)

    def log_request(self) -> None:
        if self.access_log:
            super().log_request()
        self.response_headers = None  # sent: not kept through the connection's next (held) poll

    def log_error(self, msg: str, *args: object) -> None:
        log.warning(msg % args if args else msg)


class Worker(GeventPyWSGIWorker):
    """gunicorn's gevent_pywsgi worker with :class:`Handler`, configured from ``longpoll serve``'s settings."""

    wsgi_handler = Handler

    def init_process(self) -> None:
        settings = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        Handler.read_timeout = float(settings.get("read_timeout", Handler.read_timeout))
        Handler.keep_alive = float(settings.get("keep_alive_timeout", Handler.keep_alive))
        Handler.access_log = bool(settings.get("access_log", False))
        super().init_process()
