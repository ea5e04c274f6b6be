"""Held long-polls: how many ``longpoll serve`` holds at once, at what memory, and
how fast it still answers a ready poll meanwhile.

For each row (a server mode and a number N of polls):

1. start ``longpoll serve`` (``gevent``: ``--workers 1``, gunicorn with one
   gevent worker, as it always runs; ``threads``: the same app on CherryPy's
   own threaded server, as an embedder runs it, ``bench/bare_server.py``, a
   pool of at least 1,000 threads; ``--serve-args`` adds options to the gevent
   row), or Nchan (``nchan``: nginx with
   the nchan module, one worker, as ``bench.nchan`` starts it);
2. baseline: the latency of a ready poll (``/primes?limit=100&max=1`` on a
   fresh connection; Nchan: ``/sub?id=ready``, a channel with a queued
   message; both answer at once) with nothing held, median of K;
3. open N long-polls on ``/topics/bench-held?timeout=60`` (Nchan:
   ``/sub?id=bench-held``; no publisher, so they wait) in steps of 500
   connections, each its own session;
4. once the server shows them held (``/stats`` ``held_polls``; Nchan's
   ``nchan_stub_status`` ``subscribers``): the same ready latency while they
   wait (and its ratio to the baseline), the held count, the server's RSS
   (VmRSS of the server and its children: gunicorn's arbiter and worker,
   nginx's master and worker);
5. release them all with one publish to the topic and count how many
   answered 200 with the item, and how long the release took
   (``bench.broadcast`` measures that release closely, over several runs).

Without nginx and the nchan module the Nchan row prints how to install them
(``apt-get install -y nginx libnginx-mod-nchan``) and is skipped.

The load generator is one asyncio process; it raises its open-file limit to
the hard limit (``ulimit -Hn``), and needs more than N.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from . import client, nchan
from .common import (
    Progress,
    Server,
    cpu_seconds,
    header,
    mb,
    median,
    ms,
    percentile,
    raise_nofile,
    table,
    threads_command,
)
from .profile import Profiler

TOPIC = "bench-held"
READY_PATHS = {"longpoll": "/primes?limit=100&max=1", "nchan": "/sub?id=ready"}
MARKER = b"bench-held-release"
LABELS = {"gevent": "gevent (--workers 1)", "threads": "threads (embedded cheroot)", "nchan": "nchan (1 worker)"}


def parse_rows(text: str) -> list[tuple[str, int]]:
    rows = []
    for part in text.split(","):
        mode, _, n = part.partition(":")
        if mode not in LABELS or not n.isdigit():
            raise argparse.ArgumentTypeError(f"rows are MODE:N with MODE gevent, threads or nchan, not {part!r}")
        rows.append((mode, int(n)))
    return rows


def server_args(mode: str, n: int, timeout: float) -> list[str]:
    args = ["--max-sessions", str(max(20_000, 2 * n)), "--max-timeout", str(int(timeout)), "--idle-timeout", "120"]
    return args


async def ready_latencies(port: int, samples: int, path: str) -> list[float]:
    """Ready polls one after another, each on a fresh connection (connect + request + response)."""
    found = []
    for _ in range(samples):
        try:
            status, body, seconds = await client.fetch_once("127.0.0.1", port, client.get(path, close=True),
                                                            timeout=60)
            if status != 200:
                raise RuntimeError(f"ready poll answered {status}: {body[:200]!r}")
            found.append(seconds)
        except asyncio.TimeoutError:
            found.append(float("inf"))
    return found


async def held(server: Server | nchan.Nchan) -> int:
    """The server's own count of held polls (asked from a thread: the loop keeps serving the polls)."""
    return await asyncio.get_running_loop().run_in_executor(None, server.held_polls)


async def held_poll(port: int, path: str, timeout: float, results: Counter, opened: list[int]) -> None:
    try:
        conn = await asyncio.wait_for(client.connect("127.0.0.1", port), 60)
    except (OSError, asyncio.TimeoutError) as exc:
        results[f"connect failed: {type(exc).__name__}"] += 1
        return
    opened[0] += 1
    try:
        status, body = await asyncio.wait_for(conn.request(client.get(path)), timeout + 60)
        if status == 200:
            if MARKER in body:
                results["200 with the item"] += 1
            elif b'"retry_ms"' in body:
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


def start(mode: str, n: int, args: argparse.Namespace) -> Server | nchan.Nchan:
    if mode == "nchan":
        server = nchan.Nchan(connections=n + 1000, timeout=args.timeout)
        server.publish("ready", b'{"items":[1]}')  # so that /sub?id=ready answers at once
        return server
    if mode == "threads":  # an embedder's cheroot pool, sized as longpoll.Plugin sizes it for n held polls
        command = threads_command(server_args(mode, n, args.timeout), threads=max(1000, -(-n * 10 // 9) + 100))
        server = Server(command=command, name="heldpolls-threads")
    else:
        server = Server([*server_args(mode, n, args.timeout), *shlex.split(args.serve_args)], name=f"heldpolls-{mode}")
    server.wait_ready()
    return server


async def run_row(mode: str, n: int, args: argparse.Namespace, progress: Progress) -> dict:
    row: dict = {"mode": mode, "n": n}
    kind = "nchan" if mode == "nchan" else "longpoll"
    with start(mode, n, args) as server:
        row["banner"] = server.banner
        port = server.port
        ready_path, hold_path = READY_PATHS[kind], server.hold_path.format(channel=TOPIC, timeout=args.timeout)
        await ready_latencies(port, 5, ready_path)  # warm up: imports, first sessions
        row["rss_idle"] = server.rss_kb()
        base = await ready_latencies(port, args.samples, ready_path)
        row["ready_idle"] = median(base)
        profiler = None
        if args.profile and kind == "longpoll":
            pid = server.worker_pids()[0]
            profiler = Profiler(pid, Path(args.profile) / f"heldpolls-{mode}-{n}.txt", rate=args.profile_rate,
                                nonblocking=mode != "gevent")

        results: Counter = Counter()
        opened = [0]
        tasks = []
        started = time.monotonic()
        client_cpu = cpu_seconds()
        for i in range(n):
            tasks.append(asyncio.create_task(held_poll(port, hold_path, args.timeout, results, opened)))
            if i % args.step == args.step - 1:
                await asyncio.sleep(args.step_pause)
                progress(f"{mode}: {i + 1}/{n} polls started, {opened[0]} connected")
        # wait until the server holds them all (or stops making progress)
        count, best, best_at = 0, -1, time.monotonic()
        while True:
            count = await held(server)
            progress(f"{mode}: {opened[0]}/{n} connected, server holds {count}")
            if count > best:
                best, best_at = count, time.monotonic()
            if count >= n or time.monotonic() - best_at > args.stall or time.monotonic() - started > args.open_limit:
                break
            await asyncio.sleep(0.25)
        row["open_seconds"] = time.monotonic() - started
        await asyncio.sleep(args.settle)
        row["held"] = await held(server)
        row["rss_held"] = server.rss_kb()
        lat = await ready_latencies(port, args.samples, ready_path)
        row["ready_held"] = median(lat)
        row["ready_held_max"] = max(lat)
        row["ready_held_p90"] = percentile(sorted(lat), 90)
        row["held_after"] = await held(server)
        if profiler is not None:
            row["profile"] = profiler.finish()
        if time.monotonic() - started > args.timeout - 5:
            print(f"warning: {mode}: opening and measuring took {time.monotonic() - started:.0f} s, close to the "
                  f"polls' timeout of {args.timeout:g} s: some may have timed out before the measurement",
                  file=sys.stderr)

        # release them all with one publish
        released = time.monotonic()
        status = await asyncio.get_running_loop().run_in_executor(
            None, server.publish, TOPIC, orjson.dumps({"release": MARKER.decode()}))
        if status != 201:
            print(f"{mode}: the publish answered {status}", file=sys.stderr)
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
                    help="comma-separated MODE:N, MODE gevent (--workers 1), threads (default cheroot pool) or "
                         "nchan; default gevent:10000,threads:900,nchan:10000")
    ap.add_argument("--serve-args", default="", metavar="ARGS",
                    help="more `longpoll serve` options for the gevent rows (one string)")
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
    ap.add_argument("--quick", action="store_true", help="a smoke test: gevent:300,threads:100,nchan:300, few samples")
    args = ap.parse_args()
    if args.rows is None:
        args.rows = [("gevent", 300), ("threads", 100), ("nchan", 300)] if args.quick else \
            [("gevent", 10_000), ("threads", 900), ("nchan", 10_000)]
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
    rows, skipped = [], []
    for mode, n in args.rows:
        if mode == "nchan" and nchan.missing():
            skipped.append([LABELS[mode], f"{n:,}", f"skipped: {nchan.missing()}", *[""] * 7])
            continue
        rows.append(asyncio.run(run_row(mode, n, args, progress)))

    for r in rows:
        print(f"server {r['mode']}: {r['banner']}")
    print()
    print(table([[
        LABELS[r["mode"]],
        f"{r['n']:,}",
        f"{r['held']:,}",
        f"{r['answered_200']:,}",
        ms(r["ready_idle"]),
        f"{ms(r['ready_held'])} (max {ms(r['ready_held_max'])})",
        f"{r['ready_held'] / r['ready_idle']:.1f}x",
        mb(r["rss_idle"]),
        mb(r["rss_held"]),
        f"{per_held(r):.1f} KB",
    ] for r in rows] + skipped, ["server", "polls opened", "held (server's count)", "answered 200",
                                 "ready latency, idle", "ready latency, held", "ratio", "RSS idle", "RSS held",
                                 "RSS per held poll"]))
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
    peer = next((r for r in rows if r["mode"] == "nchan"), None)
    for r in rows:
        if peer is not None and r is not peer:
            release = "" if r["n"] != peer["n"] else (
                f"; release {r['release_seconds']:.2f} s = {r['release_seconds'] / peer['release_seconds']:.1f}x "
                f"Nchan's {peer['release_seconds']:.2f} s")
            print(f"{r['mode']} N={r['n']:,}: RSS per held poll {per_held(r):.1f} KB = "
                  f"{per_held(r) / per_held(peer):.1f}x Nchan's {per_held(peer):.1f} KB (N={peer['n']:,}){release}; "
                  "same run")
    for r in rows:
        if "profile" in r:
            print()
            print(f"-- profile, {r['mode']} N={r['n']} (from opening to the end of the measurement)")
            print(r["profile"])
    return 0


def per_held(row: dict) -> float:
    """RSS growth per held poll, KB."""
    return (row["rss_held"] - row["rss_idle"]) / max(1, row["held"])


if __name__ == "__main__":
    sys.exit(main())
