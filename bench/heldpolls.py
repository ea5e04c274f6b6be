"""Held long-polls: how many a server holds at once, at what memory, and
how fast it still answers a ready poll meanwhile.

For each row (a server mode and a number N of polls), on a fresh server:

1. start it: ``granian`` is ``longpoll serve --workers 1`` (``--serve-args``
   adds options); ``asgi-granian`` and ``asgi-uvicorn`` are an app's own
   ``json_yield`` endpoint served through ``longpoll.asgi`` on granian or
   uvicorn (``bench/asgi_app.py``); ``threads`` is ``longpoll serve``'s app
   on CherryPy's own threaded server, as an embedder runs it
   (``bench/bare_server.py``, a pool of at least 1,000 threads); ``nchan`` is
   nginx with the nchan module, one worker, as ``bench.nchan`` starts it;
2. baseline: the latency of a ready poll (``/primes?limit=100&max=1`` on a
   fresh connection; the asgi app: a first poll with ``timeout=0``; Nchan:
   ``/sub?id=ready``, a channel with a queued message; all answer at once)
   with nothing held, median of K;
3. open N long-polls on ``/topics/bench-held?timeout=60`` (the asgi app:
   ``/news?topic=bench-held&timeout=60``; Nchan: ``/sub?id=bench-held``; no
   publisher, so they wait) in steps of 500 connections.  Each held poll is
   a first poll making its own session, or, with ``-continued`` after the
   mode (``granian-continued``), continues a session made just before with
   ``timeout=0`` on the same connection, as nearly every poll a server sees
   does;
4. once the server shows them held (``/stats`` ``held_polls``; Nchan's
   ``nchan_stub_status`` ``subscribers``): the same ready latency while they
   wait (and its ratio to the baseline), the held count, the server's RSS
   (VmRSS of the server and its children: granian's main process and
   worker, nginx's master and worker);
5. release them all with one publish to the topic and count how many
   answered 200 with the item, and how long the release took
   (``bench.broadcast`` measures that release closely, over several runs).

RSS per held poll is the growth from before the first session was made to
N held, divided by the held count: it includes each poll's session.

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
    AppServer,
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
NCHAN_READY = "/sub?id=ready"
MARKER = b"bench-held-release"
LABELS = {"granian": "longpoll serve (granian, 1 worker)", "threads": "threads (embedded cheroot)",
          "asgi-granian": "app through longpoll.asgi (granian)", "asgi-uvicorn": "app through longpoll.asgi (uvicorn)",
          "nchan": "nchan (1 worker)"}
CONTINUED = "-continued"


def label(mode: str) -> str:
    base = mode.removesuffix(CONTINUED)
    return LABELS[base] + (", held polls continue a session" if mode.endswith(CONTINUED) else
                           "" if base == "nchan" else ", held first polls")


def parse_rows(text: str) -> list[tuple[str, int]]:
    rows = []
    for part in text.split(","):
        mode, _, n = part.partition(":")
        base = mode.removesuffix(CONTINUED)
        if base not in LABELS or not n.isdigit() or mode == "nchan" + CONTINUED:
            raise argparse.ArgumentTypeError(f"rows are MODE:N with MODE one of {', '.join(LABELS)} (all but "
                                             f"nchan may end with {CONTINUED}), not {part!r}")
        rows.append((mode, int(n)))
    return rows


def server_args(n: int, timeout: float) -> list[str]:
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


async def held_poll(port: int, path: str, first: str | None, timeout: float, results: Counter,
                    opened: list[int]) -> None:
    """One held poll on a connection of its own; with ``first``, it continues the session that path makes."""
    try:
        conn = await asyncio.wait_for(client.connect("127.0.0.1", port), 60)
        if first is not None:
            status, body = await asyncio.wait_for(conn.request(client.get(first)), 60)
            if status != 200:
                raise ValueError(f"making the session answered {status}")
            made = orjson.loads(body)
            path = f"{path}&key={made['key']}&cursor={made['cursor']}"
    except (OSError, asyncio.TimeoutError, client.ConnectionClosed, ValueError) as exc:
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
    base = mode.removesuffix(CONTINUED)
    if base == "nchan":
        server = nchan.Nchan(connections=n + 1000, timeout=args.timeout)
        server.publish("ready", b'{"items":[1]}')  # so that /sub?id=ready answers at once
        return server
    if base == "threads":  # an embedder's cheroot pool, sized as longpoll.Plugin sizes it for n held polls
        command = threads_command(server_args(n, args.timeout), threads=max(1000, -(-n * 10 // 9) + 100))
        server = Server(command=command, name="heldpolls-threads")
    elif base.startswith("asgi-"):
        server = AppServer(base.removeprefix("asgi-"), name=f"heldpolls-{base}")
    else:
        server = Server([*server_args(n, args.timeout), *shlex.split(args.serve_args)], name=f"heldpolls-{base}")
    server.wait_ready()
    return server


async def run_row(mode: str, n: int, args: argparse.Namespace, progress: Progress) -> dict:
    row: dict = {"mode": mode, "n": n}
    kind = "nchan" if mode == "nchan" else "longpoll"
    with start(mode, n, args) as server:
        row["banner"] = server.banner
        port = server.port
        ready_path = NCHAN_READY if kind == "nchan" else server.ready_path  # type: ignore[union-attr]
        hold_path = server.hold_path.format(channel=TOPIC, timeout=args.timeout)
        first = server.hold_path.format(channel=TOPIC, timeout=0) if mode.endswith(CONTINUED) else None
        await ready_latencies(port, 5, ready_path)  # warm up: imports, first sessions
        row["rss_idle"] = server.rss_kb()
        base = await ready_latencies(port, args.samples, ready_path)
        row["ready_idle"] = median(base)
        profiler = None
        if args.profile and kind == "longpoll":
            pid = server.worker_pids()[0]
            profiler = Profiler(pid, Path(args.profile) / f"heldpolls-{mode}-{n}.txt", rate=args.profile_rate,
                                nonblocking=mode.startswith("threads"))

        results: Counter = Counter()
        opened = [0]
        tasks = []
        started = time.monotonic()
        client_cpu = cpu_seconds()
        for i in range(n):
            tasks.append(asyncio.create_task(held_poll(port, hold_path, first, args.timeout, results, opened)))
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
                    help="comma-separated MODE:N, MODE granian (longpoll serve --workers 1), asgi-granian or "
                         "asgi-uvicorn (an app through longpoll.asgi), threads (the app on a cheroot pool), each "
                         f"optionally ending with {CONTINUED}, or nchan; default "
                         "granian:10000,granian-continued:10000,asgi-granian-continued:10000,nchan:10000")
    ap.add_argument("--serve-args", default="", metavar="ARGS",
                    help="more `longpoll serve` options for the granian rows (one string)")
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
    ap.add_argument("--quick", action="store_true", help="a smoke test: granian:300, granian-continued:300, "
                    "asgi-granian:300, threads:100, nchan:300, few samples")
    args = ap.parse_args()
    if args.rows is None:
        args.rows = [("granian", 300), ("granian-continued", 300), ("asgi-granian", 300), ("threads", 100),
                     ("nchan", 300)] if args.quick else \
            [("granian", 10_000), ("granian-continued", 10_000), ("asgi-granian-continued", 10_000),
             ("nchan", 10_000)]
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
            skipped.append([label(mode), f"{n:,}", f"skipped: {nchan.missing()}", *[""] * 7])
            continue
        rows.append(asyncio.run(run_row(mode, n, args, progress)))

    for r in rows:
        print(f"server {r['mode']}: {r['banner']}")
    print()
    print(table([[
        label(r["mode"]),
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
    for r in rows:
        if r["mode"] == "nchan" or r["n"] < 10_000:
            continue
        met = r["held"] >= 10_000 and r["results"]["200 with the item"] >= 10_000
        line = (f"{r['mode']}: 10,000 held and every one answered with the item: {'met' if met else 'NOT met'}: "
                f"{r['held']:,} held, {r['results']['200 with the item']:,} got the item")
        budget = TARGET_KB.get(r["mode"].removesuffix(CONTINUED) if r["mode"].startswith("granian") else "",
                               {}).get(r["mode"].endswith(CONTINUED))
        if budget is not None:
            over = per_held(r) - budget
            line += (f"; RSS per held poll {per_held(r):.1f} KB against a target of at most {budget} KB: "
                     + ("met" if over <= 0 else f"NOT met, {over:.1f} KB ({100 * over / budget:.0f}%) over"))
        print(line)
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


TARGET_KB = {"granian": {True: 14, False: 20}}
"""RSS per held poll longpoll serve aims at: continuing a session, and a first poll making its session."""


def per_held(row: dict) -> float:
    """RSS growth per held poll, KB."""
    return (row["rss_held"] - row["rss_idle"]) / max(1, row["held"])


if __name__ == "__main__":
    sys.exit(main())
