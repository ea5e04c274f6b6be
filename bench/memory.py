"""Memory per idle session: the server's RSS before and after opening N sessions that then sit idle.

For each endpoint and server mode, a fresh ``longpoll serve --max-sessions
20000 --idle-timeout 3600`` gets a warm-up of W sessions of the same kind
(so imports, caches and, under cheroot, every pool thread's stack are already
paid for: cheroot hands requests to its 1,000 threads in turn), then N more
from 8 keep-alive connections.  The server's RSS (VmRSS, summed with its
children: granian's main process and worker) is read after the warm-up, after N/2 and after N;
per session = growth / N (and the marginal figure over the second half).

- ``sample``: ``GET /statuses/sample.json?identifier=mem-<i>&timeout=0``, a
  status-stream session with its own identifier, subscribed at the hub;
- ``primes``: ``GET /primes?limit=1000000&max=1``, a plain generator.

Each creating poll answers at once; nothing polls the sessions afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from . import client
from .common import ROOT, Progress, Server, header, mb, raise_nofile, table, threads_command

PATHS = {
    "sample": "/statuses/sample.json?identifier=mem-{i}&timeout=0",
    "primes": "/primes?limit=1000000&max=1",
}
CONNECTIONS = 8


async def open_sessions(port: int, kind: str, first: int, count: int, progress: Progress, label: str) -> int:
    opened = [0]
    failures: list[str] = []

    async def worker(w: int) -> None:
        conn = await client.connect("127.0.0.1", port)
        for i in range(first + w, first + count, CONNECTIONS):
            if conn.closed:
                conn = await client.connect("127.0.0.1", port)
            status, body = await conn.request(client.get(PATHS[kind].format(i=i)))
            if status != 200 or not orjson.loads(body).get("key"):
                failures.append(f"HTTP {status}: {body[:200]!r}")
                continue
            opened[0] += 1
            if w == 0:
                progress(f"{label}: {opened[0]:,}/{count:,} sessions opened")
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(CONNECTIONS)))
    if failures:
        raise RuntimeError(f"{len(failures)} sessions failed to open, e.g. {failures[0]}")
    return opened[0]


def settled_rss(server: Server) -> int:
    time.sleep(1.0)
    return server.rss_kb()


def run(kind: str, mode: str, n: int, warmup: int, progress: Progress) -> dict[str, Any]:
    args = ["--max-sessions", str(max(20_000, 2 * (n + warmup))), "--idle-timeout", "3600"]
    label = f"{mode}/{kind}"
    command = threads_command(args) if mode == "threads" else None
    with Server(args, command=command, name=f"memory-{mode}-{kind}") as server:
        server.wait_ready()
        port = server.port
        started = server.rss_kb()
        asyncio.run(open_sessions(port, kind, 0, warmup, progress, label + " warm-up"))
        base = settled_rss(server)
        asyncio.run(open_sessions(port, kind, warmup, n // 2, progress, label))
        half = settled_rss(server)
        asyncio.run(open_sessions(port, kind, warmup + n // 2, n - n // 2, progress, label))
        full = settled_rss(server)
        sessions = server.stats()["sessions"]
    return {"kind": kind, "mode": mode, "n": n, "started": started, "base": base, "half": half, "full": full,
            "sessions": sessions, "per_session": (full - base) * 1024 / n,
            "marginal": (full - half) * 1024 / (n - n // 2)}


def breakdown(kind: str, n: int, top: int = 12) -> str:
    """Where a session's bytes go, in this process, by tracemalloc: allocation sites per session."""
    import gc
    import tracemalloc

    from longpoll.server.app import Settings, build
    from longpoll.server.demo import primes

    root, _, _ = build(Settings(max_sessions=10 * n + 1000, max_sessions_per_identifier=5))

    def make(i: int) -> None:
        if kind == "sample":
            ident = f"mem-{i}"
            registry = root.statuses.sample_json.registry
            session = registry.create(root.statuses._sample(ident), ("statuses.sample", ident), ident)
        else:
            registry = root.primes.registry
            session = registry.create(iter(primes("1000000")), ("primes", None), None)
        registry.poll(session, None, 0, 1)  # the creating poll, as over HTTP

    for i in range(200):
        make(i)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    for i in range(200, 200 + n):
        make(i)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    total = sum(x.size_diff for x in stats)
    lines = [f"{kind}: {total / n:,.0f} bytes per session allocated by Python (tracemalloc, {n:,} sessions "
             "in-process, without an HTTP server); top sites:"]
    for x in stats[:top]:
        frame = x.traceback[0]
        name = frame.filename
        if "site-packages/" in name:
            name = name.split("site-packages/")[-1]
        elif name.startswith(str(ROOT) + "/"):
            name = name[len(str(ROOT)) + 1:]
        else:
            name = "stdlib " + Path(name).name
        lines.append(f"  {x.size_diff / n:6.0f} B in {x.count_diff / n:4.1f} blocks  {name}:{frame.lineno}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", "-n", type=int, default=10_000, help="sessions measured (default 10000)")
    ap.add_argument("--warmup", type=int, default=2000, help="sessions opened before the baseline (default 2000)")
    ap.add_argument("--kinds", default="sample,primes", help="endpoints: sample, primes (default both)")
    ap.add_argument("--modes", help="server modes: granian (longpoll serve) and/or threads (the app on cheroot, "
                                    "as embedded); default both (--quick: granian)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also show, in-process with tracemalloc, where a session's bytes are allocated")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 500 sessions after 200, granian only")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.warmup = 500, 200
    args.modes = args.modes or ("granian" if args.quick else "granian,threads")
    header("bench.memory: memory per idle session", "bench.memory")
    raise_nofile()
    progress = Progress()
    rows = [run(kind, mode, args.sessions, args.warmup, progress)
            for mode in args.modes.split(",") for kind in args.kinds.split(",")]
    print(table([[
        "threads (embedded cheroot)" if r["mode"] == "threads" else "longpoll serve (granian)",
        "sample.json (stream)" if r["kind"] == "sample" else "primes (generator)",
        f"{r['sessions']:,}", mb(r["started"]), mb(r["base"]), mb(r["full"]),
        f"{r['per_session'] / 1024:.2f} KB", f"{r['marginal'] / 1024:.2f} KB",
    ] for r in rows], ["server", "sessions of", "live sessions at the end", "RSS at start",
                       f"RSS after {args.warmup:,} warm-up", f"RSS after {args.sessions:,} more",
                       "per session", "per session, 2nd half"]))
    print()
    for r in rows:
        met = r["per_session"] <= 4096
        print(f"target (at most 4 KB per idle session): {r['mode']}/{r['kind']}: {'met' if met else 'NOT met'} "
              f"({r['per_session'] / 1024:.2f} KB" + ("" if met else f", {r['per_session'] / 4096:.1f}x the target")
              + ")")
    if args.breakdown:
        for kind in args.kinds.split(","):
            print()
            print(breakdown(kind, min(args.sessions, 5000)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
