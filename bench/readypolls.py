"""Ready polls per second of one server process, beside Nchan in the same run, with wrk as the load.

longpoll: ``wrk -tC -cC`` against ``/ticks?max=1`` (an always-ready generator,
``itertools.count()``: every poll takes one item at a constant cost), each
connection continuing ITS OWN session with the newest cursor
(``bench/continue.lua`` carries key and cursor from each answer into the
next request), so every request is a continuation poll.  The server is
``python -m bench.serve --port 0 ARGS``: ``longpoll serve`` with the options
under test plus the bench handler ``/ticks`` (``--serve-args``, one row each),
or any command that prints ``serving on http://HOST:PORT/``
(``--server-command``; ``--path`` is then its always-ready poll).

Nchan: the same wrk settings against ``/sub?id=ready``, a long-poll
subscriber of a channel with one queued message, so every request is
answered at once (what a new subscriber gets: the oldest queued message).

Runs alternate between the servers (all started once, up front), so noise
from a shared machine falls on every row alike.  Reported per server: the
median rate over the runs and each run's, wrk's latency percentiles, the
server's CPU time per request (which a load generator sharing the cores
cannot distort), and wrk's own CPU; then each longpoll row's ratio to Nchan.

wrk is a C load generator: Python ones top out below Nchan's rate.  Without
wrk (``apt-get install -y wrk``) or Nchan (``apt-get install -y nginx
libnginx-mod-nchan``) their rows print how to install them and are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from . import nchan
from .common import Progress, Server, header, median, raise_nofile, start_row, table
from .profile import Profiler, summarise

SCRIPT = Path(__file__).with_name("continue.lua")
WRK_INSTALL = "apt-get install -y wrk"
NCHAN_CHANNEL = "ready"


def wrk_version() -> str | None:
    binary = shutil.which("wrk")
    if binary is None:
        return None
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout
    return out.split(" [")[0].strip() or "wrk"


def run_wrk(url: str, connections: int, seconds: int, carry: bool, *, threads: int | None = None,
            body: bytes | None = None) -> dict[str, Any]:
    """``wrk -tC -cC -d<seconds>`` with bench/continue.lua; its summary, and its own CPU seconds.  With
    ``body``, every request POSTs it (``bench.publishes``)."""
    command = ["wrk", f"-t{threads or connections}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(SCRIPT), url]
    env = {**os.environ, "CONTINUE": "1" if carry else "0", **({"BODY": body.decode()} if body else {})}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()  # until wrk exits
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    line = next((x for x in out.splitlines() if x.startswith("WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({shlex.join(command)}):\n{out[-2000:]}")
    return {**orjson.loads(line[4:]), "wrk_cpu": usage.ru_utime + usage.ru_stime}


class Row:
    """One server under test: how to start it, where to poll, and what its runs measured."""

    def __init__(self, name: str, start: Any, path: str, carry: bool, skip: str | None = None):
        self.name, self.start, self.path, self.carry, self.skip = name, start, path, carry, skip
        self.server: Any = None
        self.runs: list[dict[str, Any]] = []
        self.banner = ""


def longpoll_rows(args: argparse.Namespace) -> list[Row]:
    rows = []
    for extra in args.serve_args:
        command = [sys.executable, "-m", "bench.serve", "--port", "0", *shlex.split(extra)]
        rows.append(Row(f"longpoll serve {extra}".strip(), lambda c=command: Server(command=c, name="readypolls"),
                        "/ticks?max=1", carry=True))
    for command in args.server_command:
        rows.append(Row(command, lambda c=command: Server(command=shlex.split(c), name="readypolls"), args.path,
                        carry=True))
    return rows


def start_nchan() -> nchan.Nchan:
    server = nchan.Nchan(connections=1000)
    status = server.publish(NCHAN_CHANNEL, b'{"items":[1]}')
    if status not in (201, 202):
        server.stop()
        raise RuntimeError(f"nchan publish answered {status}")
    return server


def check_ready(row: Row) -> None:
    """One request by hand: the path must answer 200 at once, else the figures would mean nothing."""
    import urllib.request

    try:
        with urllib.request.urlopen(row.server.url + row.path, timeout=10) as response:
            body = response.read()
    except Exception as exc:
        raise RuntimeError(f"{row.name}: {row.path} did not answer 200 at once ({exc}); a server without "
                           "/ticks needs --path") from None
    if row.carry and b'"key"' not in body:
        raise RuntimeError(f"{row.name}: {row.path} answered without a session key: {body[:200]!r}")


def measure(row: Row, args: argparse.Namespace, run: int) -> None:
    profiler = None
    if args.profile and isinstance(row.server, Server):
        profiler = Profiler(row.server.worker_pids()[0], Path(args.profile) / f"readypolls-run{run}.part",
                            rate=args.profile_rate, nonblocking=False)
    cpu0 = row.server.cpu()
    result = run_wrk(row.server.url + row.path, args.connections, args.duration, row.carry)
    result["server_cpu"] = row.server.cpu() - cpu0
    if profiler is not None:
        profiler.finish(summary=False)
        if profiler.out.exists():
            with (Path(args.profile) / f"readypolls-{slug(row.name)}.txt").open("a") as whole:
                whole.write(profiler.out.read_text())
            profiler.out.unlink()
    row.runs.append(result)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")[:60] or "server"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve-args", action="append", default=None, metavar="ARGS",
                    help="a longpoll row: these `longpoll serve` options (one string; repeat for more rows); "
                         "default two rows, '' (the default) and '--no-fast-path'")
    ap.add_argument("--server-command", action="append", default=[], metavar="CMD",
                    help="a row for any server command that prints 'serving on http://HOST:PORT/' (repeatable)")
    ap.add_argument("--path", default="/ticks?max=1", help="the always-ready poll of --server-command rows")
    ap.add_argument("--no-nchan", action="store_true", help="leave out the Nchan row")
    ap.add_argument("--connections", type=int, default=4,
                    help="wrk connections, one per wrk thread (-tC -cC; default 4)")
    ap.add_argument("--duration", type=int, default=6, help="whole seconds per wrk run (default 6)")
    ap.add_argument("--runs", type=int, default=3, help="runs per server, alternating between servers (default 3)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="whole seconds of wrk per server before measuring (default 1; 0: none)")
    ap.add_argument("--profile", metavar="DIR", help="record each longpoll server with py-spy during its runs")
    ap.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: the default and Nchan, 1 run of 1 s")
    args = ap.parse_args()
    if args.serve_args is None:
        args.serve_args = [] if args.server_command else ([""] if args.quick else ["", "--no-fast-path"])
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 1, 1
    header("bench.readypolls: ready polls per second, beside Nchan", "bench.readypolls")
    raise_nofile()
    wrk = wrk_version()
    print(f"load: {wrk or 'wrk (missing)'}, -t{args.connections} -c{args.connections} -d{args.duration}s, "
          f"{args.runs} run(s) per server alternating, after a {args.warmup} s warm-up each")
    print()
    rows = longpoll_rows(args)
    if not args.no_nchan:
        rows.append(Row("nchan", start_nchan, f"/sub?id={NCHAN_CHANNEL}", carry=False, skip=nchan.missing()))
    if wrk is None:
        for row in rows:
            row.skip = f"wrk not installed: {WRK_INSTALL}"
    progress = Progress()
    with contextlib.ExitStack() as stack:
        for row in rows:
            if not start_row(row, stack):
                continue
            check_ready(row)
            if args.warmup:
                run_wrk(row.server.url + row.path, args.connections, args.warmup, row.carry)
        live = [row for row in rows if not row.skip]
        for run in range(1, args.runs + 1):
            for row in live:
                measure(row, args, run)
                last = row.runs[-1]
                progress(f"run {run}/{args.runs} {row.name}: {1e6 * last['requests'] / last['duration_us']:,.0f}/s",
                         force=True)
    for row in rows:
        if row.banner:
            print(f"server {row.name}: {row.banner}")
    print()
    print(table([summary_cells(row) for row in rows],
                ["server", "requests/s (median)", "per run", "latency p50", "p99", "server CPU per request",
                 "server CPU", "wrk CPU", "errors", "sessions restarted"]))
    print()
    peer = next((r for r in rows if r.name == "nchan" and r.runs), None)
    for row in rows:
        if row.runs and row is not peer:
            mine = rate(row)
            if peer is None:
                print(f"{row.name}: {mine:,.0f} continuation polls/s; no Nchan row to compare with")
            else:
                print(f"{row.name}: {mine:,.0f} continuation polls/s = {mine / rate(peer):.3f}x Nchan's "
                      f"{rate(peer):,.0f}/s (Nchan {rate(peer) / mine:.1f}x faster), same run")
    for row in rows:
        path = Path(args.profile or ".") / f"readypolls-{slug(row.name)}.txt"
        if args.profile and path.exists():
            print()
            print(f"-- profile, {row.name}, all runs")
            text = summarise(path)
            path.with_suffix(".summary.txt").write_text(text + "\n")
            print(text)
    return 0


def rate(row: Row) -> float:
    return median([1e6 * r["requests"] / r["duration_us"] for r in row.runs])


def summary_cells(row: Row) -> list[str]:
    if not row.runs:
        return [row.name, f"skipped: {row.skip}" if row.skip else "-", "", "", "", "", "", "", "", ""]
    seconds = sum(r["duration_us"] for r in row.runs) / 1e6
    requests = sum(r["requests"] for r in row.runs)
    errors = sum(r[k] for r in row.runs for k in ("non_2xx", "connect_errors", "read_errors", "write_errors",
                                                       "timeouts"))
    return [
        row.name,
        f"{rate(row):,.0f}",
        ", ".join(f"{1e6 * r['requests'] / r['duration_us']:,.0f}" for r in row.runs),
        f"{median([r['p50_us'] for r in row.runs]) / 1000:.2f} ms",
        f"{median([r['p99_us'] for r in row.runs]) / 1000:.2f} ms",
        f"{1e6 * sum(r['server_cpu'] for r in row.runs) / max(1, requests):,.0f} µs",
        f"{100 * sum(r['server_cpu'] for r in row.runs) / seconds:.0f}%",
        f"{100 * sum(r['wrk_cpu'] for r in row.runs) / seconds:.0f}%",
        f"{errors}",
        f"{sum(r['restarts'] for r in row.runs)}" if row.carry else "-",
    ]


if __name__ == "__main__":
    sys.exit(main())
