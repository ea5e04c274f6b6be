"""What a session keeps costs what it is: RSS per kept item, beside the item's encoded size.

A stream's session keeps the batches it sent until the client acknowledges
them.  Each configuration runs in a fresh child process: S sessions each
stream K items of one kind (sent, not acknowledged, so all kept), and the
child reports its RSS growth (VmRSS) and what tracemalloc still holds, per
session and per kept item.

Two ways of keeping, in the same run: ``now`` is longpoll's session (each
batch kept as one JSON array in bytes of its own length); ``before`` is how
items were kept before (each as ``orjson.Fragment(orjson.dumps(item))``,
whose bytes sit in a 4 KiB buffer), measured the same way for the ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from .common import ROOT, header, table

KINDS = {
    "number": lambda i: i,
    "status": lambda i: {"id": i, "uid": 7, "login": "ann", "message": f"status number {i}", "posted": 1.7e9 + i},
}


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(way: str, kind: str, sessions: int, items: int) -> dict[str, Any]:
    from longpoll.session import Poll, Session

    make = KINDS[kind]
    encoded = sum(len(orjson.dumps(make(i))) for i in range(items)) / items
    gc.collect()
    tracemalloc.start()
    before_rss, before_traced = rss_kb(), tracemalloc.get_traced_memory()[0]
    kept: list[Any] = []
    for s in range(sessions):
        if way == "before":
            kept.append([orjson.Fragment(orjson.dumps(make(i))) for i in range(items)])
            continue
        session = Session(f"k{s}", (make(i) for i in range(items)))
        cursor = None
        while True:
            batch = session.poll(Poll(cursor, 0, 100, keep=cursor is not None))
            if not batch.count:
                break
            cursor = batch.cursor
        kept.append(session)
    gc.collect()
    grown_rss, traced = rss_kb() - before_rss, tracemalloc.get_traced_memory()[0] - before_traced
    held = sum(sent.size for s in kept if not isinstance(s, list) for sent in s._sent) if way == "now" else \
        sessions * items
    return {"way": way, "kind": kind, "encoded": encoded, "rss_kb": grown_rss, "traced": traced, "kept": held,
            "sessions": sessions}


def run(way: str, kind: str, sessions: int, items: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.kept", "--child", way, kind, str(sessions), str(items)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100, help="sessions per configuration (default 100)")
    ap.add_argument("--items", type=int, default=1000,
                    help="items each session keeps (default 1000: a stream keeps at most 1,000 items and 1 MiB)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 5 sessions of 200 items")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        way, kind, sessions, items = args.child
        print(json.dumps(child(way, kind, int(sessions), int(items))))
        return 0
    if args.quick:
        args.sessions, args.items = 5, 200
    header(f"what a session keeps: {args.sessions} sessions, {args.items} kept items each", "bench.kept")
    rows = []
    for kind in KINDS:
        results = {way: run(way, kind, args.sessions, args.items) for way in ("before", "now")}
        for way, found in results.items():
            per_item = found["rss_kb"] * 1024 / max(1, found["kept"])
            rows.append([kind, way, f"{found['encoded']:.0f} B", f"{found['kept']:,}",
                         f"{found['rss_kb'] * 1024 / found['sessions'] / 1024:,.1f} KiB",
                         f"{per_item:,.0f} B", f"{found['traced'] / max(1, found['kept']):,.0f} B"])
        ratio = results["before"]["rss_kb"] / max(1, results["now"]["rss_kb"])
        rows.append([kind, "before/now", "", "", "", f"{ratio:.1f}x", ""])
    print(table(rows, ["item", "kept as", "encoded", "items kept", "RSS per session", "RSS per item",
                       "traced per item"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
