"""Streams beside polls: the items per second one stream delivers, and what an open stream costs in memory.

1. **Throughput.** On ``python -m bench.serve`` (``longpoll serve`` plus
   ``/ticks``, an always-ready generator of constant cost), one client reads
   ``/ticks?max=M`` for D seconds three ways: long-polls one after another on
   one keep-alive connection (each carrying the last cursor: the baseline), an
   SSE stream (``Accept: text/event-stream``) and a JSON-lines stream
   (``Accept: application/x-ndjson``).  Items per second of each, and the
   stream's ratio to the polls measured in the same run.
2. **Memory.** A fresh server each: N sessions of ``/topics/bench-mem``, each
   made with ``timeout=0`` and then continued (as nearly every poll is) with a
   held poll (``timeout=60``; nothing is published, so they wait) or an SSE
   stream, one connection each.  RSS of the server (granian's main process
   and worker) before and once ``/stats`` shows all N held; per connection =
   growth / N.  A stream holds a place at the hold gate as a held poll does.

The client is Python (a blocking socket for throughput, asyncio for memory):
at small ``max`` it, not the server, may be what limits the polls' rate; the
figures say what one Python client gets, the ratio what a stream saves.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any

import orjson

from . import client
from .common import Progress, Server, header, raise_nofile, table

ACCEPT = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}


def _request(path: str, accept: str | None = None) -> bytes:
    extra = f"Accept: {accept}\r\n" if accept else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def _read_head(sock: socket.socket, buf: bytearray) -> dict[str, str]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the headers")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    lines = head.decode("latin-1").split("\r\n")
    if " 200 " not in lines[0] + " ":
        raise RuntimeError(f"answered {lines[0]!r}")
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


def polls(port: int, max_items: int, seconds: float) -> int:
    """Items delivered by polls one after another on one keep-alive connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        path = f"/ticks?max={max_items}&timeout=0"
        items = 0
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            sock.sendall(_request(path))
            headers = _read_head(sock, buf)
            length = int(headers["content-length"])
            while len(buf) < length:
                buf += sock.recv(65536)
            body = orjson.loads(bytes(buf[:length]))
            del buf[:length]
            items += len(body["items"])
            path = f"/ticks?max={max_items}&timeout=0&key={body['key']}&cursor={body['cursor']}"
        return items


def stream(port: int, max_items: int, seconds: float, transport: str) -> int:
    """Items delivered by one stream read for ``seconds``; chunked framing is skipped, not parsed: the
    frames are found by their own delimiters (SSE's blank line, a JSON line's newline)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_request(f"/ticks?max={max_items}", ACCEPT[transport]))
        buf = bytearray()
        _read_head(sock, buf)
        items = 0
        ends = time.monotonic() + seconds
        text = b""
        while time.monotonic() < ends:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the stream ended early")
            text += chunk
            *lines, text = text.split(b"\n")
            for line in lines:
                if transport == "sse":
                    if line.startswith(b"data:"):
                        items += len(orjson.loads(line[5:])["items"])
                elif line.startswith(b"{"):
                    items += len(orjson.loads(line)["items"])
        return items


def throughput(args: argparse.Namespace, progress: Progress) -> list[list[str]]:
    rows = []
    with Server(command=[sys.executable, "-m", "bench.serve", "--port", "0", "--max-sessions", "10000"],
                name="streams") as server:
        server.wait_ready()
        print(f"# {server.banner}")
        for max_items in args.max:
            progress(f"throughput: max={max_items}", force=True)
            base = polls(server.port, max_items, args.seconds) / args.seconds
            row = [str(max_items), f"{base:,.0f}"]
            for transport in ("sse", "ndjson"):
                rate = stream(server.port, max_items, args.seconds, transport) / args.seconds
                row += [f"{rate:,.0f}", f"{rate / base:.1f}x"]
            rows.append(row)
    return rows


async def hold(port: int, n: int, transport: str | None, server: Server, progress: Progress) -> float:
    """Open n held polls or streams; the server's RSS growth per connection (KB), once all are held."""
    before = server.rss_kb()
    conns = []
    for i in range(n):
        conn = await client.connect("127.0.0.1", port)
        status, body = await conn.request(_request("/topics/bench-mem?timeout=0"))
        made = orjson.loads(body)
        if status != 200:
            raise RuntimeError(f"a session was refused: {status} {body[:200]!r}")
        # held as nearly every poll is: continuing its session
        path = f"/topics/bench-mem?timeout=60&key={made['key']}&cursor={made['cursor']}"
        assert conn.transport is not None
        conn.transport.write(_request(path, ACCEPT.get(transport or "")))
        conns.append(conn)
        if i % 500 == 499:
            progress(f"memory: {i + 1:,}/{n:,} {transport or 'held polls'} opened")
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 120
    while (held := await asyncio.to_thread(server.held_polls)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {held:,} of {n:,} held after 120 s")
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # let the server settle (garbage, allocator) before reading
    grown = server.rss_kb() - before
    for conn in conns:
        conn.close()
    return grown / n


def memory(args: argparse.Namespace, progress: Progress) -> list[list[str]]:
    figures: dict[str, float] = {}
    for kind in ("poll", "sse"):
        with Server(["--max-sessions", str(2 * args.n + 1000), "--idle-timeout", "120"], name=f"streams-{kind}") \
                as server:
            server.wait_ready()
            figures[kind] = asyncio.run(hold(server.port, args.n, None if kind == "poll" else "sse", server,
                                             progress))
    return [[f"{args.n:,}", f"{figures['poll']:.1f}", f"{figures['sse']:.1f}",
             f"{figures['sse'] / figures['poll']:.2f}x"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="each throughput run's length (default 5)")
    ap.add_argument("--max", type=lambda s: [int(x) for x in s.split(",")], default=[1, 100],
                    help="comma-separated batch sizes (max=) for the throughput rows (default 1,100)")
    ap.add_argument("-n", type=int, default=2000, help="held polls and streams for the memory rows (default 2000)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 1 s runs, 200 connections")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.n, args.max = 1.0, 200, [10]
    raise_nofile()
    header("Streams beside polls", "bench.streams")
    progress = Progress()
    rows: Any = throughput(args, progress)
    print(f"\n## Items per second, one client, /ticks for {args.seconds:g} s each\n")
    print(table(rows, ["max", "polls (items/s)", "SSE (items/s)", "SSE / polls", "JSON lines (items/s)",
                       "JSON lines / polls"]))
    rows = memory(args, progress)
    print("\n## Server RSS per open connection, /topics/bench-mem, nothing published\n")
    print(table(rows, ["connections", "held poll (KB)", "SSE stream (KB)", "stream / poll"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
