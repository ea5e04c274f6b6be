"""``longpoll serve`` plus the bench handlers ``/ticks`` and ``/bare``, in whatever configuration it is given.

Usage: ``python -m bench.serve [longpoll serve options]``, e.g. ``--port 0 --workers 1``.

The ready-poll benchmark needs an endpoint that always has an item ready at a
constant cost (``/ticks``, ``itertools.count()``: the demo's ``/primes`` gets
dearer with every prime), on the very server ``longpoll serve`` runs with the
options under test.  So this runs ``longpoll serve``'s own command line, with
granian loading ``bench.bare_asgi`` in each worker instead of
``longpoll.server.application``: the same app, with the bench handlers added
to its tree.

``--max-polls-per-second`` defaults to 1,000,000 here (a benchmark connection
polls its own session thousands of times a second); give it to override.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from longpoll.server import cli, granian

TARGET = "bench.bare_asgi:app"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--max-polls-per-second") for a in argv):
        argv += ["--max-polls-per-second", "1000000"]
    if granian.TARGET != "longpoll.server.application:app":
        raise SystemExit(f"bench.serve: longpoll serve's granian target is now {granian.TARGET}")
    granian.TARGET = TARGET  # read by granian.serve when it starts granian
    return cli.main(["serve", *argv])


if __name__ == "__main__":
    sys.exit(main())
