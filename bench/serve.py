"""``longpoll serve`` plus the bench handlers ``/ticks`` and ``/bare``, in whatever configuration it is given.

Usage: ``python -m bench.serve [longpoll serve options]``, e.g. ``--port 0 --workers 1``.

The ready-poll benchmark needs an endpoint that always has an item ready at a
constant cost (``/ticks``, ``itertools.count()``: the demo's ``/primes`` gets
dearer with every prime), on the very server ``longpoll serve`` runs with the
options under test.  So this runs ``longpoll serve``'s own command line, with
the app tree it builds extended by ``bench.bare_server.add_handlers`` in each
gunicorn worker (which loads ``bench.bare_wsgi`` instead of
``longpoll.server.wsgi``).

``--max-polls-per-second`` defaults to 1,000,000 here (a benchmark connection
polls its own session thousands of times a second); give it to override.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from longpoll.server import cli, workers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--max-polls-per-second") for a in argv):
        argv += ["--max-polls-per-second", "1000000"]
    gunicorn_argv = workers.gunicorn_argv

    def gunicorn_with_bench_handlers(settings: Any) -> list[str]:
        command = gunicorn_argv(settings)
        if command[-1] != "longpoll.server.wsgi:application":
            raise SystemExit(f"bench.serve: gunicorn's command no longer ends with the app: {command}")
        return [*command[:-1], "bench.bare_wsgi:application"]

    workers.gunicorn_argv = gunicorn_with_bench_handlers  # type: ignore[assignment]
    return cli.main(["serve", *argv])


if __name__ == "__main__":
    sys.exit(main())
