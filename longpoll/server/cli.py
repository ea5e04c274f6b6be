"""The ``longpoll`` command: ``serve``, and the client commands (``signup``, ``post``, ``follow``, ``tail``...)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
from collections.abc import Sequence

import orjson

from .. import __version__
from . import tail
from .app import Settings, run
from .client import DEFAULT_URL, Client, ServerError


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
    serve.add_argument("--host", default=Settings.host,
                       help="address to listen on (default %(default)s; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=Settings.port,
                       help="port to listen on (default %(default)s; 0 picks a free one)")
    serve.add_argument("--redis", metavar="URL", default=os.environ.get("LONGPOLL_REDIS_URL") or None, type=_redis_url,
                       help="Redis URL, e.g. redis://127.0.0.1:6379/0, or redis+sentinel://HOST:PORT[,...]/SERVICE "
                            "(default: $LONGPOLL_REDIS_URL, else the embedded in-process backend)")
    serve.add_argument("--idle-timeout", type=_positive(float), default=Settings.idle_timeout, metavar="SECONDS",
                       help="expire sessions not polled for this long (default %(default)g)")
    serve.add_argument("--max-sessions", type=_positive(int), default=Settings.max_sessions, metavar="N",
                       help="live sessions before new ones get 429 (default %(default)s)")
    serve.add_argument("--max-sessions-per-identifier", type=_positive(int),
                       default=Settings.max_sessions_per_identifier, metavar="N",
                       help="live stream sessions of one identifier before its new ones get 429 (default %(default)s)")
    serve.add_argument("--max-polls-per-second", type=_positive(float), default=Settings.max_polls_per_second,
                       metavar="R",
                       help="sustained polls of one session (bursts of twice that) before 429 (default %(default)g)")
    serve.add_argument("--max-timeout", type=_positive(float), default=Settings.max_timeout, metavar="SECONDS",
                       help="longest a poll may be held, at most 60 (default %(default)g)")
    serve.add_argument("--threads", type=_positive(int), default=Settings.threads, metavar="N",
                       help="server worker threads; each held poll takes one (default %(default)s)")
    serve.add_argument("--workers", type=_positive(int), default=0, metavar="N",
                       help="run N gunicorn gevent worker processes instead of threads: 10,000+ held polls "
                            "each (needs longpoll[gevent]; above 1 needs --redis)")
    serve.add_argument("--max-held-polls", type=_positive(int), default=None, metavar="N",
                       help="polls allowed to wait at once (default: threads minus a tenth)")
    serve.add_argument("--buffer", type=_positive(int), default=Settings.buffer, metavar="N",
                       help="items a session buffers for a slow client before dropping the oldest "
                            "(default %(default)s)")
    serve.add_argument("--retention", type=_positive(int), default=Settings.retention, metavar="N",
                       help="entries the log keeps for readers that reconnect (Redis: XADD MAXLEN ~N; "
                            "default %(default)s)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="let pages from this origin poll and post (repeatable; '*' for any; default: none)")
    serve.add_argument("--access-log", action="store_true", help="log every request to stderr")

    def client_options(command: argparse.ArgumentParser, token: bool = True) -> None:
        command.add_argument("--url", default=os.environ.get("LONGPOLL_URL", DEFAULT_URL),
                             help=f"server address (default: $LONGPOLL_URL, else {DEFAULT_URL})")
        if token:
            command.add_argument("--token", default=os.environ.get("LONGPOLL_TOKEN") or None,
                                 help="API token from signup (default: $LONGPOLL_TOKEN)")

    signup = commands.add_parser("signup", help="create a user and print its API token")
    signup.add_argument("login")
    signup.add_argument("--name")
    client_options(signup, token=False)

    post = commands.add_parser("post", help="post a status as the token's user")
    post.add_argument("message")
    post.add_argument("--location", metavar="LAT,LON")
    client_options(post)

    delete = commands.add_parser("delete", help="delete one of the token's user's statuses")
    delete.add_argument("id", type=int)
    client_options(delete)

    for verb in ("follow", "unfollow"):
        change = commands.add_parser(verb, help=f"{verb} a user as the token's user")
        change.add_argument("login")
        client_options(change)

    home = commands.add_parser("home", help="print the token's user's home timeline, newest first")
    home.add_argument("--page", type=_positive(int), default=1)
    home.add_argument("--count", type=_positive(int), help="statuses per page (default: the server's, 30)")
    home.add_argument("--json", action="store_true", help="print each status as a raw JSON line")
    client_options(home)

    tail = commands.add_parser("tail", help="print statuses as they arrive (sample 100%% unless filtered)")
    tail.add_argument("--sample", type=int, metavar="PERCENT", dest="percent", help="sample percent, 1-100")
    tail.add_argument("--track", help="comma-separated phrases")
    tail.add_argument("--follow", help="comma-separated logins")
    tail.add_argument("--locations", metavar="LON1,LAT1,LON2,LAT2", help="boxes, four numbers each")
    tail.add_argument("--home", action="store_true",
                      help="the token's user's home stream: whom they follow, and their own")
    tail.add_argument("--backfill", type=int, metavar="N", help="with --home: start with the newest N home statuses")
    tail.add_argument("--identifier", default=f"tail-{secrets.token_hex(4)}", help="client identifier")
    tail.add_argument("--json", action="store_true", help="print each item as a raw JSON line")
    client_options(tail)
    return top


def _redis_url(url: str) -> str:
    from ..backends.redis import check_url

    try:
        return check_url(url)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


COORDINATE_OPTIONS = ("--location", "--locations")


def _glue_coordinates(argv: Sequence[str]) -> list[str]:
    """``--location -33.87,151.21``: argparse takes a value starting with "-" for an
    option, so give coordinates to their option as ``--location=-33.87,151.21``."""
    glued: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in COORDINATE_OPTIONS and args and args[0][:1] == "-" and args[0][1:2].isdigit():
            arg = f"{arg}={args.pop(0)}"
        glued.append(arg)
    return glued


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(_glue_coordinates(sys.argv[1:] if argv is None else argv))
    if args.command == "serve" and args.max_timeout > 60:
        parser().error("--max-timeout: PROTOCOL.md caps a poll's timeout at 60 seconds")
    if args.command == "serve":
        fields = {f.name for f in dataclasses.fields(Settings)}
        given = {name: value for name, value in vars(args).items() if name in fields}
        run(Settings(**given, redis_url=args.redis, cors_origins=tuple(args.cors_origin)))
        return 0
    if args.command == "tail":
        if args.home and not args.token:
            print("longpoll tail --home: a token is needed: --token, or LONGPOLL_TOKEN", file=sys.stderr)
            return 2
        params = {"identifier": args.identifier, "percent": args.percent, "track": args.track,
                  "follow": args.follow, "locations": args.locations, "home": args.home or None,
                  "backfill": args.backfill}
        try:
            return tail.run(args.url, {k: v for k, v in params.items() if v is not None}, args.json,
                            token=args.token)
        except ServerError as exc:
            print(f"longpoll tail: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
    if getattr(args, "token", "") is None:
        print("longpoll: a token is needed: --token, or LONGPOLL_TOKEN from `longpoll signup`", file=sys.stderr)
        return 2
    try:
        with Client(args.url, getattr(args, "token", None)) as client:
            if args.command == "signup":
                user = client.signup(args.login, args.name)
                print(f"user {user['login']} (id {user['id']}); its token, shown only now:")
                print(f"export LONGPOLL_TOKEN={user['token']}")
            elif args.command == "post":
                status = client.post(args.message, args.location)
                print(f"posted status {status['id']}")
            elif args.command == "delete":
                client.delete(args.id)
                print(f"deleted status {args.id}")
            elif args.command in ("follow", "unfollow"):
                getattr(client, f"{args.command}_user")(args.login)
                print(f"{'following' if args.command == 'follow' else 'no longer following'} {args.login}")
            elif args.command == "home":
                for status in client.home(args.page, args.count)["statuses"]:
                    print(orjson.dumps(status).decode() if args.json else tail.describe(status))
    except ServerError as exc:
        print(f"longpoll: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
