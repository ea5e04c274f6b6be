"""The ``longpoll`` command: ``serve``, and the client commands (``signup``, ``post``, ``follow``, ``tail``...)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

import orjson

from .. import __version__

try:
    from . import options, tail
    from .app import run
    from .client import DEFAULT_URL, Client, ServerError
except ModuleNotFoundError as missing:  # the library was installed without the server's extra
    raise SystemExit(f"longpoll: this command needs the server's dependencies ({missing.name} is missing): "
                     "pip install 'longpoll[server]'") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="longpoll", description="Real-time updates over plain HTTP long-polling.")
    top.add_argument("--version", action="version", version=f"longpoll {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server (embedded backend unless --redis is given)",
                                description="Run the server. " + options.PRECEDENCE)
    options.add_arguments(serve)

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
    home.add_argument("--page", type=options.positive(int), default=1)
    home.add_argument("--count", type=options.positive(int), help="statuses per page (default: the server's, 30)")
    home.add_argument("--json", action="store_true", help="print each status as a raw JSON line")
    client_options(home)

    tail = commands.add_parser("tail", help="print statuses as they arrive (sample 100%% unless filtered)")
    tail.add_argument("--sample", type=options.ranged(int, 1, 100), metavar="PERCENT", dest="percent",
                      help="sample percent, 1-100")
    tail.add_argument("--timeout", type=options.ranged(float, 0, 60), default=25, metavar="SECONDS",
                      help="how long each poll may be held, 0-60 (default %(default)s)")
    tail.add_argument("--max", type=options.ranged(int, 1, 1000), default=100, metavar="N",
                      help="most items per poll, 1-1000 (default %(default)s)")
    tail.add_argument("--track", help="comma-separated phrases")
    tail.add_argument("--follow", help="comma-separated logins")
    tail.add_argument("--locations", metavar="LON1,LAT1,LON2,LAT2", help="boxes, four numbers each")
    tail.add_argument("--home", action="store_true",
                      help="the token's user's home stream: whom they follow, and their own")
    tail.add_argument("--backfill", type=options.ranged(int, 0, 200), metavar="N",
                      help="with --home: start with the newest N home statuses (0-200)")
    tail.add_argument("--identifier", default=f"tail-{secrets.token_hex(4)}", help="client identifier")
    tail.add_argument("--json", action="store_true", help="print each item as a raw JSON line")
    tail.add_argument("--transport", choices=("poll", "sse", "ndjson"), default="poll",
                      help="long-poll, or one response streaming batch after batch (default %(default)s)")
    client_options(tail)
    return top






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
    top = parser()
    args = top.parse_args(_glue_coordinates(sys.argv[1:] if argv is None else argv))
    if args.command == "serve":
        run(options.settings(args, top.error))
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
                            token=args.token, timeout=args.timeout, max_items=args.max, transport=args.transport)
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
