"""Publishes accepted per second: small JSON POSTs from wrk, longpoll beside python-socketio and Nchan.

Each server gets ``wrk -t2 -c16`` (``--threads``, ``--connections``) POSTing
one small JSON body to one topic, for ``--duration`` seconds a run, runs
alternating between the servers (all started once, up front) so that a
shared machine's noise falls on every row alike:

- ``longpoll serve --workers 1``, embedded: ``POST /topics/bench-pub``
  (answered on the event loop, appended to the in-process log);
- the same on Redis (``--redis``, a private redis-server started here):
  appends from the requests of one moment go as one pipeline;
- python-socketio on uvicorn (``bench/socketio_server.py``): ``POST
  /publish?topic=bench-pub``, an ``emit`` to the room;
- Nchan: ``POST /pub?id=bench-pub`` (``nchan_publisher``).

Reported per server: the median rate over the runs and each run's, wrk's
latency, the server's CPU time per publish (which a load generator sharing
the cores cannot distort), errors; then each longpoll row's ratio to Nchan
and to socketio, same run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from . import nchan, socketio_server
from .common import Progress, RedisServer, Server, SocketIOServer, header, median, raise_nofile, start_row, table
from .readypolls import WRK_INSTALL, run_wrk, wrk_version

BODY = b'{"message":"hello","n":1}'
TOPIC = "bench-pub"


class Row:
    def __init__(self, name: str, start: Any, path: str, skip: str | None = None):
        self.name, self.start, self.path, self.skip = name, start, path, skip
        self.server: Any = None
        self.banner = ""
        self.runs: list[dict[str, Any]] = []


def rate(row: Row) -> float:
    return median([1e6 * r["requests"] / r["duration_us"] for r in row.runs])


def cells(row: Row) -> list[str]:
    if not row.runs:
        return [row.name, f"skipped: {row.skip}" if row.skip else "-", "", "", "", "", ""]
    requests = sum(r["requests"] for r in row.runs)
    errors = sum(r[k] for r in row.runs for k in ("non_2xx", "connect_errors", "read_errors", "write_errors",
                                                       "timeouts"))
    return [row.name, f"{rate(row):,.0f}",
            ", ".join(f"{1e6 * r['requests'] / r['duration_us']:,.0f}" for r in row.runs),
            f"{median([r['p50_us'] for r in row.runs]) / 1000:.2f} ms",
            f"{median([r['p99_us'] for r in row.runs]) / 1000:.2f} ms",
            f"{1e6 * sum(r['server_cpu'] for r in row.runs) / max(1, requests):,.0f} µs", f"{errors}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--duration", type=int, default=6, help="whole seconds per wrk run (default 6)")
    ap.add_argument("--runs", type=int, default=3, help="runs per server, alternating (default 3)")
    ap.add_argument("--no-redis", action="store_true", help="leave out the Redis row")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 1 run of 1 s")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 1
    header("bench.publishes: publishes accepted per second, beside python-socketio and Nchan", "bench.publishes")
    raise_nofile()
    wrk = wrk_version()
    print(f"load: {wrk or 'wrk (missing)'}, -t{args.threads} -c{args.connections} -d{args.duration}s, body "
          f"{BODY.decode()} ({len(BODY)} bytes), {args.runs} run(s) per server alternating")
    print()
    progress = Progress()
    with contextlib.ExitStack() as stack:
        rows = [Row("longpoll serve --workers 1, embedded", lambda: Server(["--workers", "1"], name="publishes"),
                    f"/topics/{TOPIC}")]
        if not args.no_redis:
            def on_redis() -> Server:
                redis = RedisServer()
                stack.callback(redis.stop)
                return Server(["--workers", "1", "--redis", redis.url], name="publishes-redis")
            rows.append(Row("longpoll serve --workers 1, Redis", on_redis, f"/topics/{TOPIC}"))
        rows.append(Row("python-socketio (uvicorn)", SocketIOServer, SocketIOServer.publish_path.format(channel=TOPIC),
                        skip=socketio_server.missing()))
        rows.append(Row("nchan", lambda: nchan.Nchan(connections=1000), f"/pub?id={TOPIC}", skip=nchan.missing()))
        for row in rows:
            if wrk is None:
                row.skip = f"wrk not installed: {WRK_INSTALL}"
            if not start_row(row, stack):
                continue
            run_wrk(row.server.url + row.path, args.connections, 1, False, threads=args.threads, body=BODY)
        live = [row for row in rows if not row.skip]
        for run in range(1, args.runs + 1):
            for row in live:
                cpu0 = row.server.cpu()
                result = run_wrk(row.server.url + row.path, args.connections, args.duration, False,
                                 threads=args.threads, body=BODY)
                result["server_cpu"] = row.server.cpu() - cpu0
                row.runs.append(result)
                progress(f"run {run}/{args.runs} {row.name}: {1e6 * result['requests'] / result['duration_us']:,.0f}/s",
                         force=True)
    print(table([cells(row) for row in rows],
                ["server", "publishes/s (median)", "per run", "latency p50", "p99", "server CPU per publish",
                 "errors"]))
    print()
    peers = {name: next((r for r in rows if r.name.startswith(name) and r.runs), None)
             for name in ("nchan", "python-socketio")}
    for row in rows:
        if row.runs and row.name.startswith("longpoll"):
            said = [f"{rate(row) / rate(peer):.3f}x {name}'s {rate(peer):,.0f}/s"
                    for name, peer in peers.items() if peer is not None]
            print(f"{row.name}: {rate(row):,.0f} publishes/s = {', '.join(said) or 'no peer row'}, same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
