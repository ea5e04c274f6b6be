"""The cost of longpoll's own work per poll: ready polls against a bare CherryPy handler.

One server process answers both: ``longpoll serve``'s app plus a trivial
``/bare`` handler on the same tree, on granian as ``longpoll serve --workers 1``
runs it (``granian``: ``bench.serve``) or on CherryPy's own threads as an
embedder runs it (``threads``: ``bench/bare_server.py``):

- polls: ``GET /ticks?key=K&cursor=C&max=1``, each connection carrying its
  own session's key and cursor, so each poll takes one item that is ready at
  once (the generator is ``itertools.count()``);
- bare: ``GET /bare?key=K&cursor=N&max=1``: the same request shape, answered
  with ``{"state": "ready", "items": [1]}`` and nothing else.

Rounds of each alternate for a fixed time with the same concurrent keep-alive
connections (each one request at a time), from one or more asyncio load
generator processes.  Reported: the rate of each, the ratio (target at least
0.8), and the server's CPU time per request (a figure the load generator
cannot distort).

Under granian a continuation poll is answered on the event loop and ``/bare``
goes through the WSGI bridge to CherryPy, so there the ratio is above 1: it
says what the fast path saves.  cheroot answers ``Connection: close``
whenever more than ``keep_alive_conn_limit`` connections wait between
requests (``--keep-alive-conn-limit``); reconnections are counted and
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from . import client
from .common import Progress, Server, cpu_seconds, header, raise_nofile, recv, table
from .profile import Profiler, summarise

# -- the load generator (a process each) ---------------------------------------------

async def _generator_main(port: int, connections: int, pipe: Any) -> None:
    conns: list[client.HTTPConnection] = []
    sessions: list[list] = []
    for _ in range(connections):
        conn = await client.connect("127.0.0.1", port)
        status, body = await conn.request(client.get("/ticks?max=1"))
        if status != 200:
            raise RuntimeError(f"creating a session: HTTP {status}: {body[:200]!r}")
        answer = orjson.loads(body)
        conns.append(conn)
        sessions.append([answer["key"], answer["cursor"], 0])
    pipe.send(("ready", connections))
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] == "stop":
            break
        _, kind, start, end = command
        counts = {"requests": 0, "errors": 0, "reconnects": 0}
        cpu0 = cpu_seconds()
        await asyncio.gather(*(_loop(port, conns, sessions[c], c, kind, start, end, counts)
                               for c in range(connections)))
        pipe.send({**counts, "cpu": cpu_seconds() - cpu0})
    for conn in conns:
        conn.close()


async def _loop(port: int, conns: list[client.HTTPConnection], session: list, c: int, kind: str, start: float,
                end: float, counts: dict[str, int]) -> None:
    """One connection's requests, one after another, from start to end."""
    delay = start - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    while time.time() < end:
        if conns[c].closed:  # cheroot said "Connection: close"
            counts["reconnects"] += 1
            conns[c] = await client.connect("127.0.0.1", port)
        if kind == "poll":
            path = f"/ticks?key={session[0]}&cursor={session[1]}&max=1"
        else:
            session[2] += 1
            path = f"/bare?key={session[0]}&cursor={session[2]}&max=1"
        try:
            status, body = await conns[c].request(client.get(path))
        except (OSError, client.ConnectionClosed):
            counts["errors"] += 1
            continue
        answer = orjson.loads(body)
        if status != 200 or answer.get("items") is None:
            counts["errors"] += 1
            continue
        if kind == "poll":
            session[1] = answer["cursor"]
        if time.time() <= end:
            counts["requests"] += 1


def generator_process(port: int, connections: int, pipe: Any) -> None:
    raise_nofile()
    try:
        asyncio.run(_generator_main(port, connections, pipe))
    except Exception as exc:
        pipe.send(("error", repr(exc)))


def server_command(mode: str, args: argparse.Namespace) -> list[str]:
    if mode == "threads":
        return [sys.executable, "-m", "bench.bare_server", "--port", "0", "--threads", str(args.threads),
                "--keep-alive-conn-limit", args.keep_alive_conn_limit]
    return [sys.executable, "-m", "bench.serve", "--port", "0", "--workers", "1"]


def run_mode(mode: str, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    command = server_command(mode, args)
    rounds: list[dict[str, Any]] = []
    profiles: dict[str, str] = {}
    procs = []
    with Server(command=command, name=f"bare-{mode}") as server:
        server.wait_ready()
        banner = server.banner
        port = server.port
        pipes = []
        shares = [args.connections // args.procs + (1 if p < args.connections % args.procs else 0)
                  for p in range(args.procs)]
        try:
            for share in shares:
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=generator_process, args=(port, share, theirs), daemon=True)
                proc.start()
                procs.append(proc)
                pipes.append(mine)
            for p in pipes:
                recv(p, 60, "a load generator")
            for r in range(args.rounds):
                kind = "poll" if r % 2 == 0 else "bare"
                start = time.time() + 0.3
                end = start + args.round_seconds
                for p in pipes:
                    p.send(("round", kind, start, end))
                time.sleep(max(0.0, start - time.time()))
                cpu0 = server.cpu()
                profiler = None
                if args.profile:
                    profiler = Profiler(server.worker_pids()[0],
                                        Path(args.profile) / f"overhead-{mode}-{kind}-round{r + 1}.txt",
                                        rate=args.profile_rate, nonblocking=mode == "threads")
                time.sleep(max(0.0, end - time.time()))
                server_cpu = server.cpu() - cpu0
                if profiler is not None:
                    profiler.finish(summary=False)
                    if profiler.out.exists():  # all rounds of a kind in one file
                        whole = Path(args.profile) / f"overhead-{mode}-{kind}.txt"
                        with whole.open("a" if r >= 2 else "w") as out:
                            out.write(profiler.out.read_text())
                        profiler.out.unlink()
                results = [recv(p, 60, "a load generator") for p in pipes]
                row = {"kind": kind, "seconds": end - start, "server_cpu": server_cpu,
                       **{k: sum(x[k] for x in results) for k in ("requests", "errors", "reconnects", "cpu")},
                       "max_proc_cpu": max(x["cpu"] for x in results) / (end - start)}
                rounds.append(row)
                progress(f"{mode}: round {r + 1}/{args.rounds} {kind}: {row['requests'] / row['seconds']:.0f} "
                         "requests/s", force=True)
            for p in pipes:
                p.send(("stop",))
        finally:
            for proc in procs:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
    if args.profile:
        for kind in ("poll", "bare"):
            whole = Path(args.profile) / f"overhead-{mode}-{kind}.txt"
            if whole.exists():
                profiles[kind] = summarise(whole)
                whole.with_suffix(".summary.txt").write_text(profiles[kind] + "\n")
    summary: dict[str, Any] = {"mode": mode, "banner": banner, "profiles": profiles}
    for kind in ("poll", "bare"):
        mine = [r for r in rounds if r["kind"] == kind]
        seconds = sum(r["seconds"] for r in mine)
        requests = sum(r["requests"] for r in mine)
        summary[kind] = {
            "rate": requests / seconds,
            "rounds": [r["requests"] / r["seconds"] for r in mine],
            "cpu_per_request": sum(r["server_cpu"] for r in mine) / max(1, requests),
            "server_cpu": sum(r["server_cpu"] for r in mine) / seconds,
            "errors": sum(r["errors"] for r in mine),
            "reconnects": sum(r["reconnects"] for r in mine),
            "requests": requests,
            "gen_cpu": max(r["max_proc_cpu"] for r in mine),
        }
    summary["ratio"] = summary["poll"]["rate"] / summary["bare"]["rate"]
    summary["cpu_ratio"] = summary["bare"]["cpu_per_request"] / summary["poll"]["cpu_per_request"]
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", help="server modes: threads (the app on cheroot, as an embedder runs it) and/or "
                                    "granian (longpoll serve --workers 1); default both (--quick: granian)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes (default 2)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per mode, alternating poll and bare (default 8)")
    ap.add_argument("--round-seconds", type=float, default=3.0, help="seconds per round (default 3)")
    ap.add_argument("--threads", type=int, default=1000, help="threads mode: cheroot's threads (default 1000)")
    ap.add_argument("--keep-alive-conn-limit", default="default",
                    help="threads mode: cheroot's keep_alive_conn_limit: default (as longpoll serve), "
                         "N or none")
    ap.add_argument("--profile", metavar="DIR", help="record the server with py-spy during every round")
    ap.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: granian, 8 connections, 1 process, 2 x 1 s")
    args = ap.parse_args()
    if args.quick:
        args.connections, args.procs, args.rounds, args.round_seconds = 8, 1, 2, 1.0
    args.modes = args.modes or ("granian" if args.quick else "threads,granian")
    header("bench.overhead: ready polls against a bare CherryPy handler", "bench.overhead")
    raise_nofile()
    print(f"{args.connections} keep-alive connections from {args.procs} process(es), {args.rounds} rounds of "
          f"{args.round_seconds:g} s per mode alternating poll and bare")
    print()
    progress = Progress()
    results = [run_mode(mode, args, progress) for mode in args.modes.split(",")]
    for res in results:
        print(f"server ({res['mode']}): {res['banner']}")
    print()
    print(table([[
        res["mode"],
        "polls: /ticks?key&cursor&max=1" if kind == "poll" else "bare: /bare (same query)",
        f"{s['rate']:,.0f}/s",
        ", ".join(f"{x:,.0f}" for x in s["rounds"]),
        f"{s['cpu_per_request'] * 1e6:,.0f} µs",
        f"{100 * s['server_cpu']:.0f}%",
        f"{s['reconnects'] / max(1, s['requests']):.2f}",
        f"{s['errors']}",
        f"{100 * s['gen_cpu']:.0f}%",
    ] for res in results for kind, s in ((k, res[k]) for k in ("poll", "bare"))],
        ["server", "requests", "rate", "rate per round", "server CPU per request", "server CPU",
         "reconnects per request", "errors", "busiest generator CPU"]))
    print()
    for res in results:
        print(f"{res['mode']}: ratio polls/bare {res['ratio']:.2f}x by rate, {res['cpu_ratio']:.2f}x by server CPU "
              f"per request (target at least 0.8x: {'met' if res['ratio'] >= 0.8 else 'NOT met'})")
        if max(res[k]["gen_cpu"] for k in ("poll", "bare")) > 0.85:
            print("  note: a load generator process used most of a core: it may limit these rates")
    for res in results:
        for kind, text in res["profiles"].items():
            print()
            print(f"-- profile, {res['mode']}, all {kind} rounds")
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
