"""The hub's matcher against the seed's: which sessions does a status go to?

- indexed: ``StatusRouter.match(status)`` (longpoll.server.streams.router), the hub's
  way: each filter is filed in an index when its session subscribes, and a
  status looks up only what its own words, author and cell could match;
- naive: every session's ``filter.check(status)`` on every status, as the
  book (and the seed) did.

For N in 100, 1,000 and 10,000 track filters, plus N/8 follow and N/8
locations filters (so each of those is 10% of all filters), and a stream of
statuses built like real ones: 8-20 words from a vocabulary of 3,000 with a
Zipf-like frequency, random authors among 2,000 logins, one in ten
mentioning ``@someone``, half with a location anywhere on the globe.  Track
filters follow one to three phrases of one or two words of middling
frequency; follow filters one to five logins; locations filters one or two
boxes of 1-30 degrees.

Each approach runs for a fixed time per size; both must give exactly the
same sessions for every status the naive one went through (checked and
printed).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from longpoll.server.streams.filters import FilterLimits, parse_follow, parse_locations, parse_track
from longpoll.server.streams.router import StatusRouter
from longpoll.subscription import Subscription

from .common import header, table

VOCABULARY = 3000
LOGINS = 2000
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class World:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < VOCABULARY:
            words.add("".join(self.rng.choice(LETTERS) for _ in range(self.rng.randint(3, 9))))
        self.words = sorted(words, key=lambda w: self.rng.random())  # rank order: index 0 is the most common
        weights = [1 / (rank + 1) for rank in range(VOCABULARY)]  # Zipf, s = 1
        self.cumulative = []
        total = 0.0
        for w in weights:
            total += w
            self.cumulative.append(total)
        self.logins = [f"user{k}" for k in range(LOGINS)]

    def word(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.cumulative)[0]

    def topical_word(self) -> str:
        """A word people track: not among the 50 commonest."""
        return self.words[self.rng.randrange(50, VOCABULARY)]

    def status(self, status_id: int) -> dict[str, Any]:
        words = [self.word() for _ in range(self.rng.randint(8, 20))]
        if self.rng.random() < 0.1:
            words.insert(self.rng.randrange(len(words)), "@" + self.rng.choice(self.logins))
        status: dict[str, Any] = {"id": status_id, "uid": self.rng.randrange(LOGINS),
                                  "login": self.rng.choice(self.logins), "message": " ".join(words),
                                  "posted": 1_700_000_000.0 + status_id}
        if self.rng.random() < 0.5:
            status["location"] = f"{self.rng.uniform(-90, 90):.4f},{self.rng.uniform(-180, 180):.4f}"
        return status

    def track(self) -> Any:
        phrases = [" ".join(self.topical_word() for _ in range(1 if self.rng.random() < 0.7 else 2))
                   for _ in range(self.rng.randint(1, 3))]
        return parse_track(",".join(phrases), FilterLimits())

    def follow(self) -> Any:
        return parse_follow(",".join(self.rng.sample(self.logins, self.rng.randint(1, 5))), FilterLimits())

    def locations(self) -> Any:
        numbers = []
        for _ in range(self.rng.randint(1, 2)):
            width, height = self.rng.uniform(1, 30), self.rng.uniform(1, 30)
            lon1, lat1 = self.rng.uniform(-180, 180 - width), self.rng.uniform(-90, 90 - height)
            numbers += [lon1, lat1, lon1 + width, lat1 + height]
        return parse_locations(",".join(f"{n:.4f}" for n in numbers), FilterLimits())


def build(world: World, n_track: int) -> tuple[StatusRouter, list[Subscription]]:
    router = StatusRouter()
    subs = []
    extra = max(1, n_track // 8)
    for make, count in ((world.track, n_track), (world.follow, extra), (world.locations, extra)):
        for _ in range(count):
            sub = Subscription(None, topic="statuses", filter=make(), maxlen=10)  # type: ignore[arg-type]
            router.add(sub)
            subs.append(sub)
    return router, subs


def run_size(n_track: int, seconds: float, n_statuses: int, seed: int) -> dict[str, Any]:
    world = World(seed)
    router, subs = build(world, n_track)
    statuses = [world.status(i + 1) for i in range(n_statuses)]

    # indexed: loop over the statuses until the time is up
    done = 0
    matches_indexed = 0
    start = time.perf_counter()
    while True:
        for status in statuses:
            matches_indexed += len(router.match(status))
        done += len(statuses)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    indexed_rate = done / elapsed

    # naive: every filter's check on each status, until the time is up (or all statuses are used)
    naive_results = []
    start = time.perf_counter()
    for status in statuses:
        naive_results.append([sub for sub in subs if sub.filter.check(status)])
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    naive_rate = len(naive_results) / elapsed

    # the same matches, status by status
    mismatched = 0
    matches = 0
    for status, naive in zip(statuses, naive_results, strict=False):
        indexed = set(router.match(status))
        matches += len(naive)
        if indexed != set(naive):
            mismatched += 1
    return {"track": n_track, "filters": len(subs), "indexed_rate": indexed_rate, "naive_rate": naive_rate,
            "ratio": indexed_rate / naive_rate, "checked": len(naive_results), "mismatched": mismatched,
            "matches_per_status": matches / max(1, len(naive_results))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000", help="numbers of track filters (default 100,1000,10000)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per approach and size (default 3)")
    ap.add_argument("--statuses", type=int, default=2000, help="distinct statuses in the stream (default 2000)")
    ap.add_argument("--seed", type=int, default=8, help="random seed (default 8)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: sizes 100,1000, 0.3 s each")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.seconds, args.statuses = "100,1000", 0.3, 300
    header("bench.matching: StatusRouter.match against every session's check()", "bench.matching")
    print("filters: N track + N/8 follow + N/8 locations; statuses: 8-20 Zipf-distributed words of 3,000, "
          "2,000 logins, 10% with an @mention, 50% with a location")
    print()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = run_size(size, args.seconds, args.statuses, args.seed)
        rows.append(row)
        print(f"  N={size:,}: indexed {row['indexed_rate']:,.0f}/s, naive {row['naive_rate']:,.1f}/s",
              file=sys.stderr, flush=True)
    print(table([[
        f"{r['track']:,}", f"{r['filters']:,}", f"{r['matches_per_status']:.2f}",
        f"{r['naive_rate']:,.1f}/s", f"{r['indexed_rate']:,.0f}/s", f"{r['ratio']:,.0f}x",
        f"{r['checked']:,} statuses, {'identical' if not r['mismatched'] else str(r['mismatched']) + ' DIFFER'}",
    ] for r in rows], ["track filters", "all filters", "matches per status", "naive check()", "StatusRouter.match",
                       "ratio", "same matches"]))
    print()
    top = [r for r in rows if r["track"] >= 10_000]
    for r in top:
        print(f"target (at least 20x at 10,000): {'met' if r['ratio'] >= 20 else 'NOT met'} ({r['ratio']:,.0f}x)")
    if any(r["mismatched"] for r in rows):
        print("MISMATCH: the indexed router and the naive check disagree on some statuses")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
