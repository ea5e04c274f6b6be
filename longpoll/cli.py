"""The ``longpoll`` command: ``serve`` (and, with the status streams, ``post`` and ``tail``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .server import Settings, run


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="longpoll", description="Real-time updates over plain HTTP long-polling.")
    top.add_argument("--version", action="version", version=f"longpoll {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server (embedded backend unless --redis is given)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks a free one)")
    serve.add_argument("--redis", metavar="URL", default=os.environ.get("LONGPOLL_REDIS_URL") or None,
                       help="Redis URL, e.g. redis://127.0.0.1:6379/0 (default: $LONGPOLL_REDIS_URL, "
                            "else the embedded in-process backend)")
    serve.add_argument("--idle-timeout", type=_positive(float), default=60.0, metavar="SECONDS",
                       help="expire sessions not polled for this long (default 60)")
    serve.add_argument("--max-sessions", type=_positive(int), default=10_000, metavar="N",
                       help="live sessions before new ones get 429 (default 10000)")
    serve.add_argument("--threads", type=_positive(int), default=1000, metavar="N",
                       help="server worker threads; each held poll takes one (default 1000)")
    serve.add_argument("--max-held-polls", type=_positive(int), default=None, metavar="N",
                       help="polls allowed to wait at once (default: threads minus a tenth)")
    serve.add_argument("--buffer", type=_positive(int), default=1000, metavar="N",
                       help="items a session buffers for a slow client before dropping the oldest (default 1000)")
    serve.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        run(Settings(host=args.host, port=args.port, redis_url=args.redis, idle_timeout=args.idle_timeout,
                     max_sessions=args.max_sessions, threads=args.threads, max_held_polls=args.max_held_polls,
                     buffer=args.buffer, access_log=args.access_log))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
