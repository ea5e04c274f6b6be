"""Redis behind Sentinel: ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``.

Sentinel is how one Redis primary survives the loss of its machine: the
sentinels promote a replica and tell clients where the primary now is.
redis-py asks them on every new connection; what it lacks is a pool that
waits for a free connection instead of failing with "Too many connections",
which a burst of polls (thousands held on one event loop) would hit.  Hence the small class
below: redis-py's Sentinel pool with the blocking pool's waiting.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379


def is_url(url: str) -> bool:
    return url.startswith(SCHEME + "://")


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """Finds the primary through Sentinel; waits up to ``timeout`` seconds for a free connection."""


def parse(url: str) -> tuple[list[tuple[str, int]], str, int, str | None, str | None]:
    """The sentinels, service name, database, username and password of a Sentinel URL."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":")
    nodes = []
    for node in filter(None, hosts.split(",")):
        host, colon, port = node.rpartition(":")
        if not colon or "]" in port:  # no port given (or a bare IPv6 address)
            host, port = node, str(DEFAULT_PORT)
        if not port.isdigit():
            raise ValueError(f"bad port in Sentinel URL: {node!r}")
        nodes.append((host.strip("[]"), int(port)))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not nodes or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a Sentinel URL is redis+sentinel://host:port[,host:port...]/service[/db], "
                         f"not {url!r}")
    return nodes, path[0], int(path[1]) if len(path) == 2 else 0, unquote(username) or None, \
        unquote(password) or None


def connect(url: str, max_connections: int, **options: Any) -> redis.Redis:
    """A client of the service's current primary; ``options`` are redis-py connection options."""
    nodes, service, db, username, password = parse(url)
    sentinels = Sentinel(nodes, sentinel_kwargs={"socket_timeout": options.get("socket_timeout", 5),
                                                 "socket_connect_timeout": options.get("socket_connect_timeout", 2)})
    return sentinels.master_for(service, connection_pool_class=_BlockingSentinelPool, db=db, username=username,
                                password=password, max_connections=max_connections, timeout=5, **options)
