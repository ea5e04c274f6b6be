"""Memory per session that starts with history: N sessions of ``/topics/<t>?backfill=B`` on a topic of B items.

A fresh ``longpoll serve`` (embedded, and on a private redis-server) gets a
topic of ``--items`` items of ``--item-bytes`` bytes of JSON each, published
through ``POST /topics/<t>``; then ``--sessions`` first polls, each
``GET /topics/<t>?backfill=<items>&timeout=0`` from 8 keep-alive
connections, each answered at once with its first batch.  Every session then
holds the rest of its history, and nobody polls again.  The server's RSS
(VmRSS of granian's processes, summed) is read after the items are published
and after the sessions are made; per session = growth / N.

Every session reads the same history: it is decoded once and shared, as live
items are, so what a session costs is its own bookkeeping, not a copy of the
history (which cost megabytes a session when each decoded its own).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from . import client
from .common import Progress, RedisServer, Server, header, mb, raise_nofile, table

CONNECTIONS = 8
TARGET_KB = 200.0


async def first_polls(port: int, path: str, count: int, progress: Progress, label: str) -> int:
    """``count`` sessions of ``path``, each made by a first poll that answers at once; their first batches'
    item counts, summed."""
    taken = [0, 0]

    async def worker(w: int) -> None:
        conn = await client.connect("127.0.0.1", port)
        for _ in range(w, count, CONNECTIONS):
            if conn.closed:
                conn = await client.connect("127.0.0.1", port)
            status, body = await conn.request(client.get(path))
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            taken[0] += 1
            taken[1] += len(orjson.loads(body)["items"])
            if w == 0:
                progress(f"{label}: {taken[0]:,}/{count:,} sessions")
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(CONNECTIONS)))
    return taken[1]


def settled_rss(server: Server) -> int:
    time.sleep(1.0)  # let the allocator settle what the last requests freed: RSS is a reading, not an event
    return server.rss_kb()


def run(backend: str, sessions: int, items: int, item_bytes: int, progress: Progress) -> dict[str, Any]:
    redis = RedisServer() if backend == "redis" else None
    args = ["--max-sessions", str(sessions + 1000), "--max-sessions-per-address", str(sessions + 1000),
            "--idle-timeout", "3600", "--topic-history", str(items), "--max-topic-item-bytes", str(item_bytes + 64)]
    if redis is not None:
        args += ["--redis", redis.url]
    try:
        with Server(args, name=f"backfill-{backend}") as server:
            server.wait_ready()
            topic = f"history-{backend}"
            filler = "x" * (item_bytes - 20)
            for n in range(items):
                server.publish(topic, orjson.dumps({"n": n, "text": filler}))
                progress(f"{backend}: {n + 1:,}/{items:,} items published")
            published = settled_rss(server)
            path = f"/topics/{topic}?backfill={items}&timeout=0"
            first = asyncio.run(first_polls(server.port, path, sessions, progress, backend))
            made = settled_rss(server)
            live = server.stats()["sessions"]
    finally:
        if redis is not None:
            redis.stop()
    return {"backend": backend, "published": published, "made": made, "sessions": live, "first": first / sessions,
            "per_session": (made - published) / sessions}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", "-n", type=int, default=300, help="sessions made (default 300)")
    ap.add_argument("--items", type=int, default=1000, help="items in the topic, and each session's backfill "
                                                            "(default 1000, at most 1000: the demo's cap)")
    ap.add_argument("--item-bytes", type=int, default=8000, help="bytes of JSON per item (default 8000)")
    ap.add_argument("--backends", default="memory,redis", help="memory and/or redis (default both)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 30 sessions of 100 items")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.items = 30, 100
    header("bench.backfill: memory per session that starts with history", "bench.backfill")
    raise_nofile()
    progress = Progress()
    rows = [run(b, args.sessions, args.items, args.item_bytes, progress) for b in args.backends.split(",")]
    print(table([[r["backend"], f"{r['sessions']:,}", f"{args.items:,} x {args.item_bytes:,} B",
                  f"{r['first']:.0f}", mb(r["published"]), mb(r["made"]), f"{r['per_session']:.1f} KB"]
                 for r in rows],
                ["backend", "live sessions", "backfill of", "items in each first batch", "RSS with the topic",
                 f"RSS after {args.sessions:,} sessions", "per session"]))
    print()
    for r in rows:
        met = r["per_session"] <= TARGET_KB
        print(f"target (at most {TARGET_KB:.0f} KB per session): {r['backend']}: {'met' if met else 'NOT met'} "
              f"({r['per_session']:.1f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
