"""Held long-polls: how many ``longpoll serve`` holds at once, at what memory, and
how fast it still answers a ready poll meanwhile.

For each row (a server mode and a number N of polls):

1. start ``longpoll serve`` (``--workers 1``: gunicorn with one gevent worker;
   ``threads``: the default cheroot pool of 1,000 threads);
2. baseline: the latency of a ready poll (``/primes?limit=100&max=1`` on a
   fresh connection; it answers at once) with nothing held, median of K;
3. open N long-polls on ``/topics/bench-held?timeout=60`` (no publisher, so
   they wait) in steps of 500 connections, each its own session;
4. once the server's ``/stats`` shows them held: the same ready latency
   while they wait (and its ratio to the baseline), ``held_polls``, the
   server's RSS (VmRSS of the server and its children);
5. release them all with one publish to the topic and count how many
   answered 200 (with the item), and how long the release took.

The load generator is one asyncio process; it raises its open-file limit to
the hard limit (``ulimit -Hn``), and needs more than N.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from . import client
from .common import Progress, Server, cpu_seconds, header, mb, median, ms, percentile, raise_nofile, table
from .profile import Profiler

TOPIC = "bench-held"
READY_PATH = "/primes?limit=100&max=1"


def parse_rows(text: str) -> list[tuple[str, int]]:
    rows = []
    for part in text.split(","):
        mode, _, n = part.partition(":")
        if mode not in ("gevent", "threads") or not n.isdigit():
            raise argparse.ArgumentTypeError(f"rows are MODE:N with MODE gevent or threads, not {part!r}")
        rows.append((mode, int(n)))
    return rows


def server_args(mode: str, n: int, timeout: float) -> list[str]:
    args = ["--max-sessions", str(max(20_000, 2 * n)), "--max-timeout", str(int(timeout)), "--idle-timeout", "120"]
    if mode == "gevent":
        args += ["--workers", "1"]
    return args


async def ready_latencies(port: int, samples: int) -> list[float]:
    """Ready polls one after another, each on a fresh connection (connect + request + response)."""
    found = []
    for _ in range(samples):
        try:
            status, body, seconds = await client.fetch_once("127.0.0.1", port, client.get(READY_PATH, close=True),
                                                            timeout=60)
            if status != 200:
                raise RuntimeError(f"ready poll answered {status}: {body[:200]!r}")
            found.append(seconds)
        except asyncio.TimeoutError:
            found.append(float("inf"))
    return found


async def stats(port: int) -> dict:
    status, body, _ = await client.fetch_once("127.0.0.1", port, client.get("/stats", close=True))
    return orjson.loads(body)


async def held_poll(port: int, timeout: float, results: Counter, opened: list[int]) -> None:
    try:
        conn = await asyncio.wait_for(client.connect("127.0.0.1", port), 60)
    except (OSError, asyncio.TimeoutError) as exc:
        results[f"connect failed: {type(exc).__name__}"] += 1
        return
    opened[0] += 1
    try:
        status, body = await asyncio.wait_for(conn.request(client.get(f"/topics/{TOPIC}?timeout={timeout:g}")),
                                              timeout + 60)
        if status == 200:
            answer = orjson.loads(body)
            if answer.get("items"):
                results["200 with the item"] += 1
            elif "retry_ms" in answer:
                results["200 turned away (retry_ms)"] += 1
            else:
                results["200 empty (timed out)"] += 1
        else:
            results[f"HTTP {status}"] += 1
    except asyncio.TimeoutError:
        results["no answer"] += 1
    except (OSError, client.ConnectionClosed) as exc:
        results[f"error: {type(exc).__name__}"] += 1
    finally:
        conn.close()


async def run_row(mode: str, n: int, args: argparse.Namespace, progress: Progress) -> dict:
    row: dict = {"mode": mode, "n": n}
    with Server(server_args(mode, n, args.timeout), name=f"heldpolls-{mode}") as server:
        server.wait_ready()
        port = server.port
        await ready_latencies(port, 5)  # warm up: imports, first sessions
        row["rss_idle"] = server.rss_kb()
        base = await ready_latencies(port, args.samples)
        row["ready_idle"] = median(base)
        profiler = None
        if args.profile:
            pid = server.worker_pids()[0]
            profiler = Profiler(pid, Path(args.profile) / f"heldpolls-{mode}-{n}.txt", rate=args.profile_rate,
                                nonblocking=mode != "gevent")

        results: Counter = Counter()
        opened = [0]
        tasks = []
        started = time.monotonic()
        client_cpu = cpu_seconds()
        for i in range(n):
            tasks.append(asyncio.create_task(held_poll(port, args.timeout, results, opened)))
            if i % args.step == args.step - 1:
                await asyncio.sleep(args.step_pause)
                progress(f"{mode}: {i + 1}/{n} polls started, {opened[0]} connected")
        # wait until the server holds them all (or stops making progress)
        held, best, best_at = 0, -1, time.monotonic()
        while True:
            figures = await stats(port)
            held = figures["held_polls"]
            progress(f"{mode}: {opened[0]}/{n} connected, server holds {held}")
            if held > best:
                best, best_at = held, time.monotonic()
            if held >= n or time.monotonic() - best_at > args.stall or time.monotonic() - started > args.open_limit:
                break
            await asyncio.sleep(0.25)
        row["open_seconds"] = time.monotonic() - started
        await asyncio.sleep(args.settle)
        figures = await stats(port)
        row["held"] = figures["held_polls"]
        row["rss_held"] = server.rss_kb()
        lat = await ready_latencies(port, args.samples)
        row["ready_held"] = median(lat)
        row["ready_held_max"] = max(lat)
        row["ready_held_p90"] = percentile(sorted(lat), 90)
        row["held_after"] = (await stats(port))["held_polls"]
        if profiler is not None:
            row["profile"] = profiler.finish()
        if time.monotonic() - started > args.timeout - 5:
            print(f"warning: {mode}: opening and measuring took {time.monotonic() - started:.0f} s, close to the "
                  f"polls' timeout of {args.timeout:g} s: some may have timed out before the measurement",
                  file=sys.stderr)

        # release them all with one publish
        released = time.monotonic()
        status, body, _ = await client.fetch_once(
            "127.0.0.1", port, client.post(f"/topics/{TOPIC}", {"release": True}, close=True))
        if status != 201:
            print(f"publish answered {status}: {body[:200]!r}", file=sys.stderr)
        done, pending = await asyncio.wait(tasks, timeout=args.timeout + 30)
        row["release_seconds"] = time.monotonic() - released
        for task in pending:
            task.cancel()
        row["results"] = results
        row["answered_200"] = results["200 with the item"] + results["200 empty (timed out)"] + \
            results["200 turned away (retry_ms)"]
        row["client_cpu"] = cpu_seconds() - client_cpu
        progress(f"{mode}: released in {row['release_seconds']:.2f} s: {dict(results)}", force=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=parse_rows, default=None,
                    help="comma-separated MODE:N, MODE gevent (--workers 1) or threads (default cheroot pool); "
                         "default gevent:10000,threads:900")
    ap.add_argument("--timeout", type=float, default=60, help="each held poll's timeout, seconds (default 60, the max)")
    ap.add_argument("--step", type=int, default=500, help="connections opened per step (default 500)")
    ap.add_argument("--step-pause", type=float, default=0.05, help="pause between steps, seconds (default 0.05)")
    ap.add_argument("--samples", type=int, default=21, help="ready polls per latency figure (default 21)")
    ap.add_argument("--settle", type=float, default=2, help="seconds to wait once all are held (default 2)")
    ap.add_argument("--stall", type=float, default=10,
                    help="stop waiting for more held polls after this many seconds without progress (default 10)")
    ap.add_argument("--open-limit", type=float, default=45, help="most seconds to spend opening (default 45)")
    ap.add_argument("--profile", metavar="DIR", help="record the server with py-spy into DIR and summarise")
    ap.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: gevent:300,threads:100, few samples")
    args = ap.parse_args()
    if args.rows is None:
        args.rows = [("gevent", 300), ("threads", 100)] if args.quick else [("gevent", 10_000), ("threads", 900)]
    if args.quick:
        args.samples, args.settle = 5, 0.5
    header("bench.heldpolls: concurrent held long-polls", "bench.heldpolls")
    nofile = raise_nofile()
    print(f"open-file limit of the load generator (and servers it starts): {nofile}")
    need = max(n for _, n in args.rows) + 200
    if nofile < need:
        print(f"warning: {need} file descriptors are needed; raise `ulimit -n` (hard limit {nofile})")
    print()
    progress = Progress()
    rows = []
    for mode, n in args.rows:
        rows.append(asyncio.run(run_row(mode, n, args, progress)))

    print(table([[
        "gevent (--workers 1)" if r["mode"] == "gevent" else "threads (1000)",
        f"{r['n']:,}",
        f"{r['held']:,}",
        f"{r['answered_200']:,}",
        ms(r["ready_idle"]),
        f"{ms(r['ready_held'])} (max {ms(r['ready_held_max'])})",
        f"{r['ready_held'] / r['ready_idle']:.1f}x",
        mb(r["rss_idle"]),
        mb(r["rss_held"]),
        f"{(r['rss_held'] - r['rss_idle']) / max(1, r['held']):.1f} KB",
    ] for r in rows], ["server", "polls opened", "held (/stats)", "answered 200", "ready latency, idle",
                       "ready latency, held", "ratio", "RSS idle", "RSS held", "RSS per held poll"]))
    print()
    for r in rows:
        print(f"{r['mode']} N={r['n']}: opened and held in {r['open_seconds']:.1f} s; after the measurement still "
              f"held: {r['held_after']:,}; one publish released them in {r['release_seconds']:.2f} s; "
              f"answers: {dict(r['results'])}; load generator CPU {r['client_cpu']:.1f} s")
    print()
    target = [r for r in rows if r["mode"] == "gevent" and r["n"] >= 10_000]
    for r in target:
        met = r["held"] >= 10_000 and r["answered_200"] >= 10_000
        print(f"target (10,000 held on this machine): {'met' if met else 'NOT met'}: {r['held']:,} held, "
              f"{r['answered_200']:,} answered 200, ready latency {ms(r['ready_held'])} while held "
              f"({r['ready_held'] / r['ready_idle']:.1f}x the idle {ms(r['ready_idle'])})")
    for r in rows:
        if "profile" in r:
            print()
            print(f"-- profile, {r['mode']} N={r['n']} (from opening to the end of the measurement)")
            print(r["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
