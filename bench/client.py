"""A minimal HTTP/1.1 client on asyncio protocols: keep-alive, one request at a time per connection.

The load generators share two cores with the server, so this does as little
as it can: requests are pre-built bytes, responses are parsed just enough to
find the status, Content-Length (or chunks) and the body.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson


class ConnectionClosed(ConnectionError):
    pass


class HTTPConnection(asyncio.Protocol):
    """One keep-alive connection; ``await request(raw)`` returns (status, body bytes)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is not None:
            self._parse()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosed("the server closed the connection"))

    # -- the client ------------------------------------------------------------

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self.closed or self.transport is None:
            raise ConnectionClosed("connection is closed")
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.transport.write(raw)
        if self._buf:
            self._parse()
        return waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4:total])
            del buf[:total]
        elif b"\r\ntransfer-encoding: chunked" in head:
            parsed = _chunked(buf, end + 4)
            if parsed is None:
                return
            body, total = parsed
            del buf[:total]
        else:  # no length: only a 1xx/204/304 would do this here
            body = b""
            del buf[:end + 4]
        waiter, self._waiter = self._waiter, None
        if b"\r\nconnection: close" in head and self.transport is not None:
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))


def _chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    parts = []
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        if size == 0:  # then optional trailer lines, then an empty line
            last = buf.find(b"\r\n\r\n", line_end)
            return (b"".join(parts), last + 4) if last >= 0 else None
        if len(buf) < line_end + 2 + size + 2:
            return None
        parts.append(bytes(buf[line_end + 2:line_end + 2 + size]))
        pos = line_end + 2 + size + 2


async def connect(host: str, port: int) -> HTTPConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(HTTPConnection, host, port)
    return protocol


def get(path: str, host: str = "127.0.0.1", close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def post(path: str, body: Any, headers: dict[str, str] | None = None, host: str = "127.0.0.1",
         close: bool = False) -> bytes:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def fetch_once(host: str, port: int, raw: bytes, timeout: float = 60) -> tuple[int, bytes, float]:
    """A request on a fresh connection: (status, body, seconds from before connecting to the last byte)."""
    start = time.perf_counter()
    conn = await asyncio.wait_for(connect(host, port), timeout)
    try:
        status, body = await asyncio.wait_for(conn.request(raw), timeout)
    finally:
        conn.close()
    return status, body, time.perf_counter() - start
