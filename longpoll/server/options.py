"""``longpoll serve``'s options: from flags, the environment, a config file, or defaults, in that order.

Every option has a flag (``--idle-timeout``), an environment variable
(``LONGPOLL_IDLE_TIMEOUT``) and a config-file key.  The file is CherryPy's own
format, so an embedder's config and the server's look the same: the address
is CherryPy's ``server.socket_host`` and ``server.socket_port``, everything
else ``longpoll.<name>``, in the ``[global]`` section::

    [global]
    server.socket_host = "0.0.0.0"
    server.socket_port = 8080
    longpoll.redis_url = "redis://127.0.0.1:6379/0"
    longpoll.idle_timeout = 30
    longpoll.cors_origins = ["https://app.example"]

ConfigArgParse does flags, environment and files in this order, but not in
CherryPy's format; argparse plus CherryPy's own config reader does it in
a few lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..keys import check_route
from .settings import Settings

ENV_PREFIX = "LONGPOLL_"


@dataclass(frozen=True)
class Option:
    field: str  # the Settings field
    flag: str
    help: str
    type: Callable[[str], Any] = str
    metavar: str | None = None
    repeat: bool = False  # a list: the flag repeats, the environment separates with commas
    switch: bool = False  # a flag without a value

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.field.upper()

    @property
    def key(self) -> str:
        return {"host": "server.socket_host", "port": "server.socket_port"}.get(self.field, f"longpoll.{self.field}")


def route_name(text: str) -> str:
    try:
        return check_route(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def ranged(kind: type, low: float, high: float) -> Callable[[str], Any]:
    """A number within [low, high]: what the server would refuse is refused here, with the range."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a {kind.__name__} from {low:g} to {high:g}, not {text!r}") from None
        if not low <= value <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {text}")
    return value


def timeout_cap(text: str) -> float:
    value = positive(float)(text)
    if value > 60:
        raise argparse.ArgumentTypeError("docs/protocol.md caps a poll's timeout at 60 seconds")
    return value


def redis_url(url: str) -> str:
    from ..backends.redis import check_url

    try:
        return check_url(url)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def network(text: str) -> str:
    from ..clients import networks

    try:
        networks((text,))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def key_prefix(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"a key prefix is a non-empty string without spaces, not {text!r}")
    return text


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, not {text!r}")


OPTIONS = [
    Option("host", "--host", "address to listen on (0.0.0.0 for all)"),
    Option("port", "--port", "port to listen on (0 picks a free one, and the address is printed)", port),
    Option("redis_url", "--redis", "Redis URL, e.g. redis://127.0.0.1:6379/0 or redis+sentinel://HOST:PORT[,...]/"
           "SERVICE (default: the embedded in-process backend)", redis_url, "URL"),
    Option("workers", "--workers", "worker processes, each with its event loop; above 1 needs --redis "
           "(one per core)", positive(int), "N"),
    Option("idle_timeout", "--idle-timeout", "expire sessions not polled for this long", positive(float), "SECONDS"),
    Option("max_sessions", "--max-sessions", "live sessions before new ones get 429", positive(int), "N"),
    Option("max_sessions_per_identifier", "--max-sessions-per-identifier",
           "live stream sessions of one identifier before its new ones get 429", positive(int), "N"),
    Option("max_sessions_per_address", "--max-sessions-per-address",
           "live sessions made from one client address before its new ones get 429 (see --trust-proxy)",
           positive(int), "N"),
    Option("trusted_proxies", "--trust-proxy", "a reverse proxy (address or network) whose X-Forwarded-For names "
           "the client (repeatable; default: none, the peer address is the client)", network, "CIDR", repeat=True),
    Option("max_polls_per_second", "--max-polls-per-second",
           "sustained polls of one session (bursts of twice that) before 429", positive(float), "R"),
    Option("max_timeout", "--max-timeout", "longest a poll may be held, at most 60", timeout_cap, "SECONDS"),
    Option("max_stream_seconds", "--max-stream-seconds", "longest an SSE or JSON-lines stream stays open before "
           "the server ends it (clients reconnect and resume)", positive(float), "SECONDS"),
    Option("heartbeat", "--heartbeat", "a stream's heartbeat after this long without sending; also how soon a "
           "vanished stream client is found out", positive(float), "SECONDS"),
    Option("max_held_polls", "--max-held-polls", "polls allowed to wait at once (default: as many as sessions)",
           positive(int), "N"),
    Option("max_stream_bytes", "--max-stream-bytes", "bytes all of a worker's SSE and JSON-lines streams may hold "
           "that their connections have not taken; past it the slowest stream is ended, and its client resumes "
           "where it was (at least 65536)", ranged(int, 64 * 1024, 2**62), "BYTES"),
    Option("max_body_bytes", "--max-body-bytes", "largest request body, in bytes (413 past it)", positive(int), "N"),
    Option("read_timeout", "--read-timeout", "longest wait for a request's whole head, and again for its body (a "
           "body that stalls answers 408); also how long an idle kept-alive connection stays (at most 60)",
           timeout_cap, "SECONDS"),
    Option("max_connections", "--max-connections", "connections a worker holds open (held polls, streams and idle "
           "keep-alives); past it, new ones wait in the listen queue", positive(int), "N"),
    Option("buffer", "--buffer", "items a session buffers for a slow client before dropping the oldest",
           positive(int), "N"),
    Option("prefix", "--prefix", "what every Redis key the server writes starts with", key_prefix, "PREFIX"),
    Option("retention", "--retention", "statuses (and follow events) kept for hubs that fall behind and sessions "
           "that resume (Redis: XADD MAXLEN ~N)", positive(int), "N"),
    Option("topic_retention", "--topic-retention", "items the demo's anonymous /topics keep, all topics together "
           "(and the Idempotency-Keys they remember)", positive(int), "N"),
    Option("topic_history", "--topic-history", "items each /topics topic keeps for backfill= and sessions that "
           "resume", positive(int), "N"),
    Option("topic_ttl", "--topic-ttl", "a /topics topic's history goes this long after its last item (Redis)",
           positive(float), "SECONDS"),
    Option("max_topic_item_bytes", "--max-topic-item-bytes", "largest item published to /topics, in bytes of JSON",
           positive(int), "N"),
    Option("idempotency_window", "--idempotency-window", "how long a /topics publish's Idempotency-Key is "
           "remembered: a retry within it stores nothing and answers the first position", positive(float),
           "SECONDS"),
    Option("cors_origins", "--cors-origin", "let pages from this origin poll and post (repeatable; '*' for any; "
           "default: none)", str, "ORIGIN", repeat=True),
    Option("route", "--route", "this server's name in the keys of sessions only it can continue (letters and "
           "digits), for a proxy to send each key back to it (docs/deploying.md)", route_name, "NAME"),
    Option("access_log", "--access-log", "log every request to stderr", boolean, switch=True),
    Option("fastpath", "--no-fast-path", "answer continuation polls through CherryPy's machinery too (slower; "
           "for comparing)", boolean, switch=True),
]

PRECEDENCE = ("Each option is read from, in order: its flag; its environment variable (LONGPOLL_ and the "
              "option's name, e.g. LONGPOLL_IDLE_TIMEOUT; lists comma-separated); the --config file "
              "(CherryPy's format: [global] with server.socket_host, server.socket_port and longpoll.<name>, "
              "e.g. longpoll.idle_timeout = 30); the default.")


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """Flags only record what was given (defaults are resolved in :func:`settings`)."""
    serve.add_argument("--config", metavar="FILE", help="a CherryPy-format config file (see above)")
    defaults = Settings()
    for option in OPTIONS:
        default = getattr(defaults, option.field)
        shown = "" if option.switch or default in (None, ()) else f"; default {default}"
        text = f"{option.help} (env {option.env}{shown})"
        if option.switch:
            value = option.field != "fastpath"  # --no-fast-path sets fastpath False
            serve.add_argument(option.flag, dest=option.field, action="store_const", const=value,
                               default=argparse.SUPPRESS, help=text)
        else:
            serve.add_argument(option.flag, dest=option.field, type=option.type, metavar=option.metavar,
                               action="append" if option.repeat else "store", default=argparse.SUPPRESS, help=text)


def settings(args: argparse.Namespace, error: Callable[[str], Any],
             environ: Mapping[str, str] | None = None) -> Settings:
    """Flags over environment over file over defaults."""
    environ = os.environ if environ is None else environ
    given: dict[str, Any] = {}
    if getattr(args, "config", None) or environ.get(ENV_PREFIX + "CONFIG"):
        given.update(_from_file(args.config or environ[ENV_PREFIX + "CONFIG"], error))
    for option in OPTIONS:
        text = environ.get(option.env)
        if text is None or text == "":
            continue
        given[option.field] = _convert(option, text.split(",") if option.repeat else text, option.env, error)
    for option in OPTIONS:
        if option.field in vars(args):
            given[option.field] = getattr(args, option.field)
    for field in ("trusted_proxies", "cors_origins"):
        if field in given:
            given[field] = tuple(given[field])
    return dataclasses.replace(Settings(), **given)


def _convert(option: Option, value: Any, where: str, error: Callable[[str], Any]) -> Any:
    try:
        if option.repeat:
            values = value if isinstance(value, (list, tuple)) else [value]
            return [option.type(str(v).strip()) for v in values if str(v).strip()]
        if option.switch or option.type is boolean:
            return value if isinstance(value, bool) else boolean(str(value))
        return option.type(str(value))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        return error(f"{where}: {exc}")


def _from_file(path: str, error: Callable[[str], Any]) -> dict[str, Any]:
    from cherrypy.lib import reprconf

    try:
        sections = reprconf.Parser().dict_from_file(path)
    except (OSError, ValueError, SyntaxError) as exc:
        return error(f"--config {path}: {exc}")
    found: dict[str, Any] = {}
    keys = {option.key: option for option in OPTIONS}
    for name, value in sections.get("global", {}).items():
        option = keys.get(name)
        if option is not None:
            found[option.field] = _convert(option, value, f"{path}: {name}", error)
        elif name.startswith("longpoll."):
            return error(f"{path}: {name} is not a longpoll serve setting; known: {', '.join(sorted(keys))}")
    return found

