"""Publish-to-client latency of the status streams under a steady load.

S live sessions each long-poll ``POST /statuses/filter.json`` with
``track=w<i>`` (a word of its own) and its own identifier, re-polling as soon
as an answer arrives (``timeout=25``).  A publisher ``POST``s ``/statuses`` at
a steady R per second for a warm-up and then the measured window; each status
says ``b<seq> <send time> w<j>`` for a random j, so it reaches exactly one
session (R deliveries a second in all) and every session's poll is released
by its own statuses.  Latency = the time the poller has the whole response
minus the time the publisher wrote the request (one machine, one clock).

Each configuration (server mode x backend) runs in a fresh server:
``granian`` is ``longpoll serve`` (``--workers 1``: granian, polls held and
continued on its event loop), ``granianN`` the same with N workers (Redis
only); ``threads`` is ``longpoll serve``'s app on CherryPy's own threaded
server as an embedder runs it
(``bench/bare_server.py``), given ``--threads`` large enough to hold a poll
per session (the hold gate keeps a tenth free); ``memory`` is the embedded
backend, ``redis`` a private redis-server started here (durable sessions:
every poll also reads and writes its session in Redis); ``redis-publish`` is
the Redis backend with the publisher sending each status straight to Redis
(``PUBLISH streaming:status:``, the seeds' way) instead of ``POST /statuses``:
the server then pays for one request per status (the poll that delivers it)
instead of two, which shows the delivery path apart from the publishing API.

Pollers and publisher are asyncio processes of their own; their CPU use is
printed, so that a generator that limits the figures shows as such.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from . import client
from .common import (
    Progress,
    RedisServer,
    Server,
    cpu_seconds,
    get_json,
    header,
    ms,
    percentile,
    post_json,
    raise_nofile,
    recv,
    table,
)
from .profile import Profiler

CHANNEL = "streaming:status:"  # longpoll.server.streams.bridge.CHANNEL

POLL_TIMEOUT = 25


# -- the pollers (a process each) ---------------------------------------------------

async def _create(port: int, index: int) -> tuple[client.HTTPConnection, str, str]:
    conn = await client.connect("127.0.0.1", port)
    body = {"identifier": f"lat-{index}", "track": f"w{index}", "timeout": 0}
    status, raw = await conn.request(client.post("/statuses/filter.json", body))
    if status != 200:
        raise RuntimeError(f"creating session {index}: HTTP {status}: {raw[:200]!r}")
    answer = orjson.loads(raw)
    return conn, answer["key"], answer["cursor"]


async def _poller_main(port: int, indexes: list[int], pipe: Any) -> None:
    sessions: dict[int, list] = {}
    sem = asyncio.Semaphore(50)

    async def create(i: int) -> None:
        async with sem:
            conn, key, cursor = await _create(port, i)
            sessions[i] = [conn, key, cursor]

    await asyncio.gather(*(create(i) for i in indexes))
    pipe.send(("ready", len(sessions)))
    loop = asyncio.get_running_loop()
    stop_at = await loop.run_in_executor(None, pipe.recv)  # (stop time)
    seqs, sent, received = array("q"), array("d"), array("d")
    counts: Counter = Counter()
    cpu0 = cpu_seconds()

    async def run(i: int) -> None:
        conn, key, cursor = sessions[i]
        word = f"w{i}"
        ident = f"lat-{i}"
        while time.time() < stop_at:
            raw = client.post("/statuses/filter.json",
                              {"identifier": ident, "key": key, "cursor": cursor, "timeout": POLL_TIMEOUT})
            if conn.closed:  # the server answered "Connection: close" (cheroot's keep_alive_conn_limit)
                counts["reconnects after Connection: close"] += 1
                conn = await client.connect("127.0.0.1", port)
            try:
                status, body = await asyncio.wait_for(conn.request(raw), POLL_TIMEOUT + 30)
            except (OSError, client.ConnectionClosed, asyncio.TimeoutError) as exc:
                counts[f"poll error {type(exc).__name__}"] += 1
                conn.close()
                await asyncio.sleep(0.05)
                conn = await client.connect("127.0.0.1", port)
                continue
            now = time.time()
            counts["polls"] += 1
            if status != 200:
                counts[f"HTTP {status}"] += 1
                try:
                    wait = orjson.loads(body).get("retry_ms", 100) / 1000
                except Exception:
                    wait = 0.1
                if status == 410:  # expired: start again (its statuses meanwhile are lost)
                    conn.close()
                    conn, key, cursor = await _create(port, i)
                    continue
                await asyncio.sleep(wait)
                continue
            answer = orjson.loads(body)
            cursor = answer["cursor"]
            if answer.get("dropped"):
                counts["dropped (buffer)"] = max(counts["dropped (buffer)"], answer["dropped"])
            for item in answer["items"]:
                parts = item.get("message", "").split()
                if len(parts) != 3 or parts[2] != word:
                    counts["misrouted"] += 1
                    continue
                seqs.append(int(parts[0][1:]))
                sent.append(float(parts[1]))
                received.append(now)
            if answer.get("retry_ms") is not None and not answer["items"]:
                counts["turned away (retry_ms)"] += 1
                await asyncio.sleep(answer["retry_ms"] / 1000)
        conn.close()

    tasks = [asyncio.create_task(run(i)) for i in sessions]
    await asyncio.sleep(max(0.0, stop_at - time.time()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send({"seqs": seqs.tobytes(), "sent": sent.tobytes(), "received": received.tobytes(),
               "counts": dict(counts), "cpu": cpu_seconds() - cpu0})


def poller_process(port: int, indexes: list[int], pipe: Any) -> None:
    raise_nofile()
    try:
        asyncio.run(_poller_main(port, indexes, pipe))
    except Exception as exc:
        pipe.send(("error", repr(exc)))


# -- the publisher -------------------------------------------------------------------

async def _publisher_main(port: int, tokens: list[str], rate: float, sessions: int, start: float, end: float,
                          pipe: Any, redis_url: str | None = None) -> None:
    """POST /statuses over keep-alive connections, or (``redis_url``) PUBLISH to the bridge's channel."""
    conns = [await client.connect("127.0.0.1", port) for _ in tokens]
    publisher = None
    if redis_url is not None:
        import redis.asyncio

        publisher = redis.asyncio.Redis.from_url(redis_url, max_connections=len(tokens))
    seqs, sent, ok, late = array("q"), array("d"), array("b"), array("d")
    behind = [0.0]
    reconnects = [0]
    cpu0 = cpu_seconds()

    async def run(c: int) -> None:
        conn = conns[c]
        rng = random.Random(c)
        headers = {"Authorization": f"Bearer {tokens[c]}"}
        k = c
        while True:
            due = start + k / rate
            if due >= end or time.time() >= end:  # behind schedule: what was not sent by the end is not sent
                break
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind[0] = max(behind[0], -delay)
            j = rng.randrange(sessions)
            if conn.closed:  # the server answered "Connection: close"
                reconnects[0] += 1
                conn = conns[c] = await client.connect("127.0.0.1", port)
            now = time.time()
            message = f"b{k} {now:.6f} w{j}"
            if publisher is not None:  # the seeds' way: every server process's bridge hands it to its hub
                status = {"id": k + 1, "uid": 1, "login": "bench", "message": message, "posted": now}
                status = 201 if await publisher.publish(CHANNEL, orjson.dumps(status)) else 0
            else:
                try:
                    status, _ = await conn.request(client.post("/statuses", {"message": message}, headers))
                except (OSError, client.ConnectionClosed):
                    status = 0
                    conn = conns[c] = await client.connect("127.0.0.1", port)
            seqs.append(k)
            sent.append(now)
            late.append(max(0.0, now - due))
            ok.append(1 if status == 201 else 0)
            k += len(tokens)

    await asyncio.gather(*(run(c) for c in range(len(tokens))))
    for conn in conns:
        conn.close()
    if publisher is not None:
        await publisher.aclose()
    pipe.send({"seqs": seqs.tobytes(), "sent": sent.tobytes(), "ok": ok.tobytes(), "late": late.tobytes(),
               "behind": behind[0],
               "reconnects": reconnects[0], "cpu": cpu_seconds() - cpu0})


def publisher_process(port: int, tokens: list[str], rate: float, sessions: int, start: float, end: float,
                      pipe: Any, redis_url: str | None = None) -> None:
    try:
        asyncio.run(_publisher_main(port, tokens, rate, sessions, start, end, pipe, redis_url))
    except Exception as exc:
        pipe.send(("error", repr(exc)))


# -- one configuration ---------------------------------------------------------------

def run_config(mode: str, backend: str, rate: float, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    row: dict[str, Any] = {"mode": mode, "backend": backend, "rate": rate}
    redis = RedisServer() if backend.startswith("redis") else None
    server_args = ["--max-sessions", str(max(10_000, 2 * args.sessions)), "--idle-timeout", "120"]
    command = None
    if mode.startswith("granian"):
        workers = int(mode[7:] or 1)
        server_args += ["--workers", str(workers)]
        row["server"] = f"longpoll serve (granian, --workers {workers})"
    else:  # longpoll serve's app on CherryPy's own threaded server, as an embedder runs it
        threads = args.threads or max(1000, -(-args.sessions * 10 // 9) + 100)
        command = [sys.executable, "-m", "bench.bare_server", "--port", "0", *server_args, "--threads", str(threads),
                   "--max-polls-per-second", "50", "--keep-alive-conn-limit", args.keep_alive_conn_limit]
        row["server"] = f"threads (cheroot, {threads}, keep_alive_conn_limit {args.keep_alive_conn_limit})"
    if redis is not None:
        server_args += ["--redis", redis.url]
        if command is not None:
            command += ["--redis", redis.url]
    procs: list[Any] = []
    try:
        with Server(server_args, command=command, name=f"latency-{mode}-{backend}") as server:
            url = server.wait_ready()
            port = server.port
            tokens = []
            for c in range(args.connections):
                user = post_json(url + "/users", {"login": f"pub{c}-{random.randrange(10**9)}"})
                tokens.append(user["token"])
            # pollers: create the sessions, then wait for the start
            pipes = []
            shares = [list(range(p, args.sessions, args.poller_procs)) for p in range(args.poller_procs)]
            for share in shares:
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=poller_process, args=(port, share, theirs), daemon=True)
                proc.start()
                procs.append(proc)
                pipes.append(mine)
            created = sum(recv(p, 120, "a poller")[1] for p in pipes)
            progress(f"{mode}/{backend}: {created} sessions created", force=True)
            start = time.time() + 0.5
            measure_from = start + args.warmup
            end = measure_from + args.duration
            stop_at = end + args.drain
            for p in pipes:
                p.send(stop_at)
            mine, theirs = ctx.Pipe()
            pub = ctx.Process(target=publisher_process,
                              args=(port, tokens, rate, args.sessions, start, end, theirs,
                                    redis.url if backend == "redis-publish" else None), daemon=True)
            pub.start()
            procs.append(pub)
            profiler = None
            cpu_at: dict[str, float] = {}
            while time.time() < stop_at:
                now = time.time()
                if now >= measure_from and "start" not in cpu_at:
                    cpu_at["start"] = server.cpu()
                    cpu_at["t0"] = now
                    if args.profile:
                        profiler = Profiler(server.worker_pids()[0],
                                            Path(args.profile) / f"latency-{mode}-{backend}-{rate:g}.txt",
                                            rate=args.profile_rate, nonblocking=mode == "threads")
                if now >= end and "end" not in cpu_at:
                    cpu_at["end"] = server.cpu()
                    cpu_at["t1"] = now
                    if profiler is not None:
                        row["profile"] = profiler.finish()
                        profiler = None
                if now >= start:
                    try:
                        figures = get_json(url + "/stats", timeout=5)
                        phase = "warm-up" if now < measure_from else "measuring" if now < end else "draining"
                        progress(f"{mode}/{backend}: {phase}, {now - start:.0f} s: server polls {figures['polls']:,}, "
                                 f"items delivered {figures['items_delivered']:,}, held {figures['held_polls']:,}")
                    except Exception as exc:  # a slow /stats is no reason to stop
                        progress(f"{mode}/{backend}: /stats failed: {exc}")
                time.sleep(0.5)
            published = recv(mine, 60, "the publisher")
            results = [recv(p, 60, "a poller") for p in pipes]
            if profiler is not None:
                row["profile"] = profiler.finish()
            row["server_cpu"] = (cpu_at.get("end", server.cpu()) - cpu_at.get("start", 0.0)) / max(
                1e-9, cpu_at.get("t1", time.time()) - cpu_at.get("t0", start))
            row["server_stats"] = get_json(url + "/stats", timeout=10)
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        if redis is not None:
            redis.stop()
    return analyse(row, published, results, start, measure_from, end, args)


def analyse(row: dict[str, Any], published: dict, results: list[dict], start: float, measure_from: float,
            end: float, args: argparse.Namespace) -> dict[str, Any]:
    pub_seqs = array("q")
    pub_seqs.frombytes(published["seqs"])
    pub_sent = array("d")
    pub_sent.frombytes(published["sent"])
    pub_ok = array("b")
    pub_ok.frombytes(published["ok"])
    pub_late = array("d")
    pub_late.frombytes(published["late"])
    lags = sorted(lag for t, lag in zip(pub_sent, pub_late, strict=True) if measure_from <= t < end)
    got: dict[int, float] = {}
    duplicates = 0
    counts: Counter = Counter()
    poller_cpu = 0.0
    for r in results:
        seqs, sent, received = array("q"), array("d"), array("d")
        seqs.frombytes(r["seqs"])
        sent.frombytes(r["sent"])
        received.frombytes(r["received"])
        for s, t0, t1 in zip(seqs, sent, received, strict=True):
            if s in got:
                duplicates += 1
            else:
                got[s] = t1 - t0
        counts.update(r["counts"])
        poller_cpu += r["cpu"]
    window = [(s, t) for s, t, ok in zip(pub_seqs, pub_sent, pub_ok, strict=True) if ok and measure_from <= t < end]
    failed = sum(1 for ok in pub_ok if not ok)
    all_ok = [s for s, ok in zip(pub_seqs, pub_ok, strict=True) if ok]
    latencies = sorted(got[s] for s, _ in window if s in got)
    row.update({
        "published": len(window),
        "published_all": len(all_ok),
        "publish_failed": failed,
        "delivered": len(latencies),
        "lost": len(window) - len(latencies),
        "lost_all": sum(1 for s in all_ok if s not in got),
        "duplicates": duplicates,
        "achieved_rate": len(window) / args.duration,
        "behind": published["behind"],
        "lag_p99": percentile(lags, 99),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": latencies[-1] if latencies else float("nan"),
        "counts": dict(counts),
        "publisher_reconnects": published["reconnects"],
        "poller_cpu": poller_cpu / (end + args.drain - start),
        "publisher_cpu": published["cpu"] / (end - start),
    })
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", "-S", type=int, default=1000, help="live sessions (default 1000)")
    ap.add_argument("--rate", "-R", default="1000",
                    help="statuses published per second; several, comma-separated, run one after another "
                         "(default 1000)")
    ap.add_argument("--duration", type=float, default=8, help="measured seconds (default 8)")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of publishing before measuring (default 2)")
    ap.add_argument("--drain", type=float, default=2, help="seconds to wait for the last deliveries (default 2)")
    ap.add_argument("--modes", help="server modes, comma-separated: granian (longpoll serve --workers 1), "
                                    "granianN (--workers N, Redis only), threads (the app on cheroot, as "
                                    "embedded); default granian (--quick: granian)")
    ap.add_argument("--backends", help="backends, comma-separated: memory, redis (statuses POSTed), "
                                       "redis-publish (statuses PUBLISHed to Redis by the publisher, the "
                                       "seeds' way: no POST in the server's bill); default all three "
                                       "(--quick: memory)")
    ap.add_argument("--threads", type=int, default=0,
                    help="cheroot threads in threads mode (default: enough to hold every session's poll)")
    ap.add_argument("--keep-alive-conn-limit", default="default",
                    help="threads mode: cheroot's keep_alive_conn_limit, N or none (default: what longpoll.Plugin "
                         "sets)")
    ap.add_argument("--connections", type=int, default=8, help="publisher keep-alive connections (default 8)")
    ap.add_argument("--poller-procs", type=int, default=1, help="poller processes (default 1)")
    ap.add_argument("--profile", metavar="DIR", help="record the server with py-spy during the measured window")
    ap.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 50 sessions, 100/s, 2 s, granian, memory")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.rate, args.duration, args.warmup, args.drain = 50, "100", 2, 1, 1
    args.modes = args.modes or "granian"
    args.backends = args.backends or ("memory" if args.quick else "memory,redis,redis-publish")
    rates = [float(r) for r in str(args.rate).split(",")]
    header("bench.latency: publish-to-client latency of the status streams", "bench.latency")
    raise_nofile()
    print(f"{args.sessions:,} sessions (track=w<i> each), {args.rate} statuses/s, each to one session; "
          f"{args.warmup:g} s warm-up, {args.duration:g} s measured; publisher: {args.connections} keep-alive "
          f"connections; pollers: {args.poller_procs} process(es)")
    print()
    progress = Progress()
    rows = []
    for rate in rates:
        for backend in args.backends.split(","):
            for mode in args.modes.split(","):
                if mode.startswith("granian") and int(mode[7:] or 1) > 1 and not backend.startswith("redis"):
                    print(f"(skipping {mode} on {backend}: more than one worker needs Redis)")
                    continue
                rows.append(run_config(mode, backend, rate, args, progress))
    print(table([[
        r["server"], r["backend"], f"{args.sessions:,}", f"{r['rate']:g}/s", f"{r['achieved_rate']:.0f}/s",
        f"{r['published']:,}", f"{r['delivered']:,}", f"{r['lost']:,}", ms(r["p50"]), ms(r["p99"]), ms(r["max"]),
        ms(r["lag_p99"]), f"{100 * r['server_cpu']:.0f}%",
        f"{100 * r['poller_cpu']:.0f}% + {100 * r['publisher_cpu']:.0f}%",
    ] for r in rows], ["server", "backend", "sessions", "asked", "sent", "published", "delivered", "missing",
                       "p50", "p99", "max", "send lag p99", "server CPU", "pollers + publisher CPU"]))
    print()
    print("(sent: statuses per second the publisher sent in the measured window; published/delivered/missing count "
          "them, missing being not delivered by the end of the drain, --drain seconds after the window; "
          "send lag: how late the publisher sent a status against its steady schedule, which it keeps by "
          "sending late ones at once; latency counts from the actual send; CPU is % of one core)")
    for r in rows:
        notes = []
        if r["achieved_rate"] < 0.97 * r["rate"]:
            notes.append(f"the publisher achieved only {r['achieved_rate']:.0f} of {r['rate']:g} statuses/s: the "
                         f"server answered its POSTs too slowly (it fell up to {r['behind']:.2f} s behind schedule)")
        elif r["achieved_rate"] > 1.03 * r["rate"]:
            notes.append(f"the publisher sent {r['achieved_rate']:.0f}/s, above {r['rate']:g}/s: it was catching "
                         f"up after falling up to {r['behind']:.2f} s behind schedule (the server was slow)")
        if r["publish_failed"]:
            notes.append(f"{r['publish_failed']} publishes failed")
        if r["lost_all"] or r["duplicates"]:
            notes.append(f"over the whole run {r['lost_all']} not delivered by the end of the drain, "
                         f"{r['duplicates']} delivered twice")
        if r["poller_cpu"] > 0.85 or r["publisher_cpu"] > 0.85:
            notes.append("a load generator process was near a full core: it may limit these figures")
        print(f"{r['server']}, {r['backend']}, {r['rate']:g}/s: poller counts {r['counts']}; publisher "
              f"reconnects after Connection: close {r['publisher_reconnects']:,}; server stats: "
              f"polls {r['server_stats']['polls']:,}, items_dropped {r['server_stats']['items_dropped']}"
              + ("; " + "; ".join(notes) if notes else ""))
    print()
    for r in rows:
        met = r["p99"] < 0.050 and r["lost"] == 0 and r["achieved_rate"] >= 0.97 * r["rate"]
        verdict = "met" if met else "NOT met"
        print(f"target p99 < 50 ms with nothing lost, {args.sessions:,} sessions at {r['rate']:g}/s: {r['server']}, "
              f"{r['backend']}: {verdict} (p99 {ms(r['p99'])}, missing {r['lost']}, "
              f"{r['achieved_rate']:.0f}/s achieved)")
    for r in rows:
        if "profile" in r:
            print()
            print(f"-- profile, {r['server']}, {r['backend']}, {r['rate']:g}/s (measured window)")
            print(r["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
