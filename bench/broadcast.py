"""One publish releasing N held polls: how long until each poll has the item, longpoll beside Nchan.

The servers: ``longpoll serve`` (``--serve-args``, default ``--workers 1``;
or ``--server-command``), python-socketio on uvicorn with its clients on
Engine.IO long-polling (``bench/socketio_server.py``; skipped, with a line
saying so, when python-socketio or uvicorn is not installed), and Nchan.
Each run, on each server in turn (all started once, up front; runs alternate
between them so that a shared machine's noise falls on every row alike):

1. holder processes open N connections in steps, each sending one long-poll
   (longpoll: a session is made with ``GET /topics/news-<run>?timeout=0``,
   then held with ``GET /topics/news-<run>?timeout=60&key=K&cursor=C``, as
   nearly every poll a server sees continues a session; Nchan:
   ``GET /sub?id=news-<run>``, ``nchan_subscriber longpoll``);
2. once the server says it holds them all (longpoll's ``/stats``
   ``held_polls``, Nchan's ``nchan_stub_status`` ``subscribers``; or no
   progress for ``--stall`` seconds), the server's RSS is read and one
   publish is sent (``POST /topics/news-<run>``, socketio's ``POST
   /publish?topic=news-<run>``, an ``emit`` to the room; ``POST
   /pub?id=news-<run>``; a JSON body with a marker unique to the run);
3. each holder notes when each poll's whole answer arrived, and whether it
   carried the marker.  Release time = that moment minus the moment before
   the publish was sent (``time.monotonic``, one clock for all processes).

Reported per run and server: held, answered with the item, p50 / p99 / max
of the release; over the runs: the median of each and the worst max, RSS
idle and with N held (the first run) and per held poll, and each row's
ratio to Nchan and longpoll's to socketio.  A fresh channel per run: the
sessions of a run's released polls stay subscribed to their topic until
they expire, and would take every later publish too.

The holders are asyncio processes (``--procs``, default one per core) that
do nothing per answer but note its time: their CPU share of the release
window is printed, and one near 100% means the holders, not the server,
set the figures.  N connections need N file descriptors here and in the
server: the limit is raised to the hard limit (``ulimit -Hn``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import secrets
import shlex
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from . import client, nchan, socketio_server
from .common import (
    Progress,
    Server,
    SocketIOServer,
    header,
    mb,
    median,
    percentile,
    raise_nofile,
    recv,
    start_row,
    table,
)
from .profile import Profiler, summarise

# -- the holders (a process each) ----------------------------------------------------


class Hold:
    """One run's polls in one holder: open them, then note when each answer arrives and if it has the marker."""

    def __init__(self, port: int, path: str, marker: str, handshake: str):
        self.port, self.path, self.raw, self.marker = port, path, client.get(path), marker.encode()
        self.handshake = handshake
        self.timeout = path.rsplit("timeout=", 1)[-1] if "timeout=" in path else ""
        self.conns: list[client.HTTPConnection] = []
        self.answers: list[tuple[float, int, bool] | None] = []
        self.odd: list[str] = []  # the first few answers without the item, as they were: what they said
        self.failed: Counter = Counter()
        self.answered = 0
        self.last = (0.0, 0.0)  # (monotonic, CPU) when the last answer arrived
        self.done = asyncio.Event()

    async def open(self, count: int, step: int, pause: float) -> None:
        for start in range(0, count, step):
            await asyncio.gather(*(self._open_one() for _ in range(min(step, count - start))))
            await asyncio.sleep(pause)

    async def _open_one(self) -> None:
        try:
            conn = await asyncio.wait_for(client.connect("127.0.0.1", self.port), 60)
            raw = await self._continuation(conn)
        except (OSError, asyncio.TimeoutError, client.ConnectionClosed, ValueError) as exc:
            self.failed[f"connect: {type(exc).__name__}"] += 1
            return
        index = len(self.conns)
        self.conns.append(conn)
        self.answers.append(None)
        conn.request(raw).add_done_callback(lambda future: self._note(index, future))

    async def _continuation(self, conn: client.HTTPConnection) -> bytes:
        """The request that is held.  longpoll: it continues a session made first (timeout=0), as nearly
        every poll a server sees does; Engine.IO: a session, the namespace connected (into the run's room)
        and its answer read, as a client does before it waits; Nchan has no sessions: its subscriber
        request as it is."""
        if self.handshake == "engineio":
            return await self._engineio(conn)
        if self.handshake != "session":
            return self.raw
        status, body = await asyncio.wait_for(conn.request(client.get(
            self.path.replace(f"timeout={self.timeout}", "timeout=0"))), 60)
        if status != 200:
            raise ValueError(f"making the session answered {status}")
        made = orjson.loads(body)
        return client.get(f"{self.path}&key={made['key']}&cursor={made['cursor']}")

    async def _engineio(self, conn: client.HTTPConnection) -> bytes:
        status, body = await asyncio.wait_for(conn.request(self.raw), 60)
        if status != 200 or not body.startswith(b"0"):
            raise ValueError(f"the Engine.IO handshake answered {status}")
        polling = f"{self.path.split('?')[0]}?EIO=4&transport=polling&sid={orjson.loads(body[1:])['sid']}"
        topic = urllib.parse.parse_qs(self.path.split("?", 1)[1])["topic"][0]
        status, _ = await asyncio.wait_for(conn.request(client.post(
            polling, b"40" + orjson.dumps({"topic": topic}))), 60)
        if status != 200:
            raise ValueError(f"the namespace connect answered {status}")
        status, body = await asyncio.wait_for(conn.request(client.get(polling)), 60)
        if status != 200 or not body.startswith(b"40"):
            raise ValueError(f"the namespace connect's answer was {status} {body[:100]!r}")
        return client.get(polling)

    def _note(self, index: int, future: asyncio.Future) -> None:
        at = time.monotonic()
        try:
            if future.exception() is not None:
                self.failed[type(future.exception()).__name__] += 1
            else:
                status, body = future.result()
                self.answers[index] = (at, status, self.marker in body)
                if self.marker not in body and len(self.odd) < 3:
                    self.odd.append(f"{status} {body[:300].decode('utf-8', 'replace')}")
        finally:
            self.answered += 1
            if self.answered == len(self.conns):
                self.last = (at, time.process_time())
                self.done.set()

    async def wait(self, deadline: float) -> None:
        if self.conns:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.done.wait(), max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


async def _holder_main(pipe: Any) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] == "stop":
            return
        _, port, path, handshake, count, step, pause, marker = command
        hold = Hold(port, path, marker, handshake)
        await hold.open(count, step, pause)
        pipe.send(("opened", len(hold.conns)))
        await loop.run_in_executor(None, pipe.recv)  # ("mark",): the publish goes out now
        marked = (time.monotonic(), time.process_time())
        pipe.send(("marked",))
        _, deadline = await loop.run_in_executor(None, pipe.recv)  # ("report", monotonic deadline)
        await hold.wait(deadline)
        last = hold.last if hold.last[0] else (time.monotonic(), time.process_time())
        pipe.send({"answers": hold.answers, "failed": dict(hold.failed), "connected": len(hold.conns), "odd": hold.odd,
                   "cpu_share": (last[1] - marked[1]) / max(1e-6, last[0] - marked[0])})
        hold.close()


def holder_process(pipe: Any) -> None:
    raise_nofile()
    try:
        asyncio.run(_holder_main(pipe))
    except Exception as exc:
        pipe.send(("error", repr(exc)))


# -- the coordinator --------------------------------------------------------------------


class Row:
    """One server under test and its runs."""

    def __init__(self, name: str, start: Any, skip: str | None = None):
        self.name, self.start, self.skip = name, start, skip
        self.server: Any = None
        self.runs: list[dict[str, Any]] = []
        self.banner = ""
        self.rss_idle = 0


def serve_rows(args: argparse.Namespace) -> list[Row]:
    base = ["--max-sessions", str(max(20_000, args.n * (args.runs + 1))), "--max-timeout", f"{args.timeout:g}",
            "--idle-timeout", "120"]
    rows = []
    for extra in args.serve_args:
        rows.append(Row(f"longpoll serve {extra}".strip(),
                        lambda e=extra: Server([*base, *shlex.split(e)], name="broadcast")))
    for command in args.server_command:
        rows.append(Row(command, lambda c=command: Server(command=shlex.split(c), name="broadcast")))
    return rows


def one_run(row: Row, run: int, pipes: list[Any], args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    server = row.server
    channel = f"news-{run}"
    marker = f"release-{run}-{secrets.token_hex(4)}"
    path = server.hold_path.format(channel=channel, timeout=args.timeout)
    shares = [args.n // len(pipes) + (1 if i < args.n % len(pipes) else 0) for i in range(len(pipes))]
    step = max(1, args.step // len(pipes))
    started = time.monotonic()
    for pipe, share in zip(pipes, shares, strict=True):
        pipe.send(("open", server.port, path, getattr(server, "handshake", "none"), share, step, args.step_pause,
                   marker))
    connected = sum(recv(p, args.open_limit + 60, "a holder")[1] for p in pipes)
    held, best, best_at = 0, -1, time.monotonic()
    while True:
        held = server.held_polls()
        progress(f"{row.name} run {run}: {connected:,}/{args.n:,} connected, server holds {held:,}")
        if held > best:
            best, best_at = held, time.monotonic()
        if held >= args.n or time.monotonic() - best_at > args.stall or \
                time.monotonic() - started > args.open_limit:
            break
        time.sleep(0.2)
    time.sleep(args.settle)
    result: dict[str, Any] = {"run": run, "connected": connected, "held": server.held_polls(),
                              "open_seconds": time.monotonic() - started, "rss_held": server.rss_kb()}
    profiler = None
    if args.profile and isinstance(server, Server):
        profiler = Profiler(server.worker_pids()[0], Path(args.profile) / "broadcast-release.part",
                            rate=args.profile_rate, nonblocking=False)
        time.sleep(0.5)  # py-spy attaching
    for pipe in pipes:
        pipe.send(("mark",))
    for pipe in pipes:
        recv(pipe, 60, "a holder")
    cpu0 = server.cpu()
    t0 = time.monotonic()
    status = server.publish(channel, orjson.dumps({"release": marker}))
    result["publish_seconds"] = time.monotonic() - t0
    result["publish_status"] = status
    for pipe in pipes:
        pipe.send(("report", t0 + args.timeout + 30))
    reports = [recv(pipe, args.timeout + 90, "a holder") for pipe in pipes]
    result["server_cpu"] = server.cpu() - cpu0
    if profiler is not None:
        profiler.finish(summary=False)
        if profiler.out.exists():
            with (Path(args.profile) / f"broadcast-{slug(row.name)}.txt").open("a") as whole:
                whole.write(profiler.out.read_text())
            profiler.out.unlink()
    times = sorted(a[0] - t0 for r in reports for a in r["answers"] if a is not None)
    outcomes: Counter = Counter()
    for report in reports:
        for answer in report["answers"]:
            if answer is None:
                outcomes["no answer"] += 1
            elif answer[1] == 200 and answer[2]:
                outcomes["200 with the item"] += 1
            else:
                outcomes[f"{answer[1]} without the item"] += 1
        for kind, n in report["failed"].items():
            outcomes[f"failed: {kind}"] += n
    result["with_item"] = outcomes.pop("200 with the item", 0)
    result["other"] = dict(outcomes)
    for said in [odd for report in reports for odd in report["odd"]][:3]:
        progress(f"{row.name} run {run}: an answer without the item: {said}", force=True)
    result["p50"], result["p99"] = percentile(times, 50), percentile(times, 99)
    result["max"] = times[-1] if times else math.nan
    result["holder_cpu"] = max(r["cpu_share"] for r in reports)
    progress(f"{row.name} run {run}: {result['held']:,} held, {result['with_item']:,} got the item; release p50 "
             f"{result['p50']:.3f} s, max {result['max']:.3f} s", force=True)
    return result


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")[:60] or "server"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-N", "--n", type=int, default=10_000, help="held polls per run (default 10000)")
    ap.add_argument("--runs", type=int, default=5, help="runs per server, alternating between servers (default 5)")
    ap.add_argument("--serve-args", action="append", default=None, metavar="ARGS",
                    help="a longpoll row: these `longpoll serve` options (one string; repeat for more rows); "
                         "default '--workers 1'")
    ap.add_argument("--server-command", action="append", default=[], metavar="CMD",
                    help="a row for any server command that prints 'serving on http://HOST:PORT/' and serves "
                         "/topics/<name> as longpoll serve does (repeatable)")
    ap.add_argument("--no-nchan", action="store_true", help="leave out the Nchan row")
    ap.add_argument("--no-socketio", action="store_true",
                    help="leave out the python-socketio row (Engine.IO long-polling on uvicorn; skipped when "
                         "python-socketio or uvicorn is not installed)")
    ap.add_argument("--procs", type=int, default=2, help="holder processes (default 2)")
    ap.add_argument("--timeout", type=float, default=60, help="each held poll's timeout, seconds (default 60)")
    ap.add_argument("--step", type=int, default=500, help="connections opened per step, all holders (default 500)")
    ap.add_argument("--step-pause", type=float, default=0.05, help="pause between steps, seconds (default 0.05)")
    ap.add_argument("--settle", type=float, default=1, help="seconds to wait once all are held (default 1)")
    ap.add_argument("--stall", type=float, default=10,
                    help="publish anyway after this many seconds without more held polls (default 10)")
    ap.add_argument("--open-limit", type=float, default=45, help="most seconds to spend opening (default 45)")
    ap.add_argument("--profile", metavar="DIR", help="record each longpoll server with py-spy during the releases")
    ap.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: N=200, 2 runs, one holder")
    args = ap.parse_args()
    if args.serve_args is None:
        args.serve_args = [] if args.server_command else ["--workers 1"]
    if args.quick:
        args.n, args.runs, args.procs, args.settle = 200, 2, 1, 0.2
    header("bench.broadcast: one publish releasing N held polls, beside Nchan", "bench.broadcast")
    nofile = raise_nofile()
    print(f"N={args.n:,} held polls per run, {args.runs} runs per server alternating, {args.procs} holder "
          f"process(es); open-file limit {nofile}")
    if nofile < args.n + 200:
        print(f"warning: {args.n + 200} file descriptors are needed; raise `ulimit -n` (hard limit {nofile})")
    print()
    rows = serve_rows(args)
    if not args.no_socketio:
        rows.append(Row("socketio", SocketIOServer, skip=socketio_server.missing()))
    if not args.no_nchan:
        rows.append(Row("nchan", lambda: nchan.Nchan(connections=args.n + 1000, timeout=args.timeout),
                        skip=nchan.missing()))
    progress = Progress()
    ctx = multiprocessing.get_context("spawn")
    procs, pipes = [], []
    with contextlib.ExitStack() as stack:
        try:
            for _ in range(args.procs):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=holder_process, args=(theirs,), daemon=True)
                proc.start()
                procs.append(proc)
                pipes.append(mine)
            for row in rows:
                if start_row(row, stack):
                    row.rss_idle = row.server.rss_kb()
            for run in range(1, args.runs + 1):
                for row in rows:
                    if not row.skip:
                        row.runs.append(one_run(row, run, pipes, args, progress))
        finally:
            for pipe in pipes:
                with contextlib.suppress(OSError):
                    pipe.send(("stop",))
            for proc in procs:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
    report(rows, args)
    return 0


def report(rows: list[Row], args: argparse.Namespace) -> None:
    for row in rows:
        if row.runs:
            print(f"server {row.name}: {row.banner}")
    print()
    print(table([[
        row.name, str(r["run"]), f"{r['held']:,}", f"{r['with_item']:,}",
        ", ".join(f"{k} {v:,}" for k, v in r["other"].items()) or "-",
        f"{r['p50']:.3f} s", f"{r['p99']:.3f} s", f"{r['max']:.3f} s",
        f"{r['server_cpu']:.2f} s", f"{100 * r['holder_cpu']:.0f}%", f"{r['open_seconds']:.1f} s",
    ] for row in rows for r in row.runs], ["server", "run", "held", "got the item", "other answers",
                                           "release p50", "p99", "max", "server CPU in release",
                                           "busiest holder CPU", "opening took"]))
    print()
    print(table([summary_cells(row, args) for row in rows],
                ["server", "runs", "every held poll got the item", "release p50 (median)", "p99 (median)",
                 "max (worst)", "p50 over runs", "RSS idle", "RSS with N held", "RSS per held poll"]))
    print()
    peer = next((r for r in rows if r.name == "nchan" and r.runs), None)
    socketio = next((r for r in rows if r.name == "socketio" and r.runs), None)
    for row in rows:
        if not row.runs or row is peer:
            continue
        for other in (peer, socketio):
            if other is not None and other is not row and not (other is socketio and row.name == "nchan"):
                ratios = ", ".join(f"{what} {stat(row, what) / stat(other, what):.1f}x"
                                   for what in ("p50", "p99", "max"))
                print(f"{row.name} / {other.name}, release time over the runs (same run): {ratios}")
        if peer is None:
            print(f"{row.name}: no Nchan row to compare with")
    if any(r["holder_cpu"] > 0.8 for row in rows for r in row.runs):
        print("note: a holder process was busy most of a release: the holders may limit those figures "
              "(try --procs)")
    for row in rows:
        path = Path(args.profile or ".") / f"broadcast-{slug(row.name)}.txt"
        if args.profile and path.exists():
            print()
            print(f"-- profile, {row.name}, the releases of all runs")
            text = summarise(path)
            path.with_suffix(".summary.txt").write_text(text + "\n")
            print(text)


def stat(row: Row, what: str) -> float:
    values = [r[what] for r in row.runs]
    return max(values) if what == "max" else median(values)


def summary_cells(row: Row, args: argparse.Namespace) -> list[str]:
    if not row.runs:
        return [row.name, f"skipped: {row.skip}" if row.skip else "-", "", "", "", "", "", "", "", ""]
    first = row.runs[0]
    every = all(r["with_item"] == args.n for r in row.runs)
    return [
        row.name, str(len(row.runs)),
        "yes" if every else f"no ({sum(r['with_item'] for r in row.runs):,} of {args.n * len(row.runs):,})",
        f"{stat(row, 'p50'):.3f} s", f"{stat(row, 'p99'):.3f} s", f"{stat(row, 'max'):.3f} s",
        f"{min(r['p50'] for r in row.runs):.3f} - {max(r['p50'] for r in row.runs):.3f} s",
        mb(row.rss_idle), mb(first["rss_held"]),
        f"{(first['rss_held'] - row.rss_idle) / max(1, first['held']):.1f} KB",
    ]


if __name__ == "__main__":
    sys.exit(main())
