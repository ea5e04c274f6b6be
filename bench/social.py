"""Posting to many followers: the latency of ``POST /statuses`` against the author's follower count.

For each backend (``--backends memory,redis``) and follower count F
(``--followers``, default 0,1000,10000), a fresh ``longpoll serve`` gets an
author and F users who follow it (signed up and following over HTTP, from 8
connections).  Then the author posts P statuses (``--posts``) one at a time
from one keep-alive connection, and for each:

- **post**: the time ``POST /statuses`` takes to answer 201;
- **fan-out done**: from sending the post until the home timeline of the
  author's newest follower (the last one syndication reaches) shows it,
  read with ``GET /home?count=1`` every 2 ms: what a post would take if it
  waited for its fan-out, as the book's ``post_status`` does for the first
  1,000 followers.

The next post is sent once the previous fan-out is done.  A second pass sends
the P posts back to back (a burst) and reports the same figures, the fan-out
of later posts queueing behind earlier ones.  Server, Redis and client share
the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx

from .common import Progress, RedisServer, Server, header, ms, percentile, raise_nofile, table

CONNECTIONS = 8


def setup(url: str, followers: int, progress: Progress) -> tuple[str, str]:
    """An author and ``followers`` users following it; the author's token and the newest follower's."""
    with httpx.Client(base_url=url, timeout=30) as c:
        author = c.post("/users", data={"login": "author"}).json()["token"]

    def fan(worker: int) -> str:
        token = ""
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(worker, followers, CONNECTIONS):
                token = c.post("/users", data={"login": f"fan{i}"}).json()["token"]
                answer = c.post("/users/author/follow", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 200, answer.text
                if worker == 0:
                    progress(f"{i + 1:,}/{followers:,} followers")
        return token

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(fan, range(CONNECTIONS)))
    with httpx.Client(base_url=url, timeout=30) as c:  # the newest follower: the last the fan-out reaches
        newest = c.get("/users/author/followers", params={"count": 1}).json()["users"]
        if not newest:
            return author, author
        # Its token: follow again as a fresh user, who is then the newest follower of all.
        token = c.post("/users", data={"login": "last_fan"}).json()["token"]
        c.post("/users/author/follow", headers={"Authorization": f"Bearer {token}"})
    return author, token


def measure(url: str, author: str, last: str, posts: int, burst: bool) -> tuple[list[float], list[float]]:
    posted: list[float] = []
    spread: list[float] = []
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {author}"}) as poster, \
            httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {last}"}) as reader:
        sent: list[tuple[int, float]] = []
        for i in range(posts):
            started = time.perf_counter()
            answer = poster.post("/statuses", data={"message": f"to everyone {i}"})
            posted.append(time.perf_counter() - started)
            assert answer.status_code == 201, answer.text
            sent.append((answer.json()["id"], started))
            if not burst:
                spread.append(wait_home(reader, sent[-1][0]) - started)
        if burst:
            for status_id, started in sent:
                spread.append(wait_home(reader, status_id) - started)
    return posted, spread


def wait_home(reader: httpx.Client, status_id: int, timeout: float = 120) -> float:
    """When the reader's home timeline has the status (or a newer one: it has it too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = reader.get("/home", params={"count": 1}).json()["statuses"]
        if statuses and statuses[0]["id"] >= status_id:
            return time.perf_counter()
        time.sleep(0.002)
    raise RuntimeError(f"status {status_id} never reached the newest follower's home timeline")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,redis")
    parser.add_argument("--followers", default="0,1000,10000", help="comma-separated follower counts")
    parser.add_argument("--posts", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a few seconds: 0 and 200 followers, 5 posts")
    args = parser.parse_args()
    if args.quick:
        args.followers, args.posts = "0,200", 5
    raise_nofile()
    header("bench.social: posting to an author's followers", "bench.social")
    progress = Progress()
    rows = []
    for backend in args.backends.split(","):
        for followers in (int(f) for f in args.followers.split(",")):
            with ExitStack() as stack:
                server_args: list[str] = []
                if backend == "redis":
                    server_args += ["--redis", stack.enter_context(RedisServer()).url]
                command = [sys.executable, "-m", "longpoll.server", "serve", "--port", "0", *server_args]
                server = stack.enter_context(Server(command=command, name=f"social-{backend}"))
                url = server.wait_ready()
                started = time.monotonic()
                author, last = setup(url, followers, progress)
                progress(f"{backend}, {followers:,} followers: set up in {time.monotonic() - started:.0f} s",
                         force=True)
                for burst in (False, True):
                    posted, spread = (sorted(x) for x in measure(url, author, last, args.posts, burst))
                    rows.append([backend, f"{followers + (1 if followers else 0):,}",
                                 "burst" if burst else "one at a time", str(args.posts),
                                 ms(percentile(posted, 50)), ms(percentile(posted, 99)), ms(posted[-1]),
                                 ms(percentile(spread, 50)), ms(spread[-1])])
                    progress(" | ".join(rows[-1]), force=True)
    print(table(rows, ["backend", "followers", "posts sent", "posts", "post p50", "post p99", "post max",
                       "fan-out done p50", "fan-out done max"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
