"""One Redis client per URL, and what its errors become: everything in longpoll that talks to Redis goes
through here.

redis-py errors never leave the backends raw: a connection or timeout error
becomes :class:`~longpoll.errors.BackendUnavailable` (503 with Retry-After),
so a poll or a publish during an outage answers "try later", never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from ..errors import BackendUnavailable
from . import sentinel

RETRY = Retry(EqualJitterBackoff(cap=0.1, base=0.01), 1)
"""One quick retry (a pooled connection gone stale after a Redis restart), then 503:
redis-py's default of 10 retries would hold a publisher for seconds."""

def _quiet_handshake() -> dict[str, Any]:
    """redis-py 8 pipelines a new connection's handshake and, with a health check interval, reads the first
    refusal in it as the next PING's answer, failing the command.  A Redis before 7.2 refuses ``CLIENT SETINFO``
    and one before 8 ``CLIENT MAINT_NOTIFICATIONS`` (Redis Enterprise's maintenance notices, which a
    self-hosted Redis never sends): ask for neither."""
    try:
        from redis.driver_info import DriverInfo  # noqa: F401  (redis-py 7.1 and later name the library so)
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # an older redis-py reads each handshake reply in turn
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": None, "maint_notifications_config": MaintNotificationsConfig(enabled=False)}


QUIET_HANDSHAKE = _quiet_handshake()


SCHEMES = ("redis", "rediss", "unix")
"""What redis-py's ``from_url`` reads (Sentinel's URLs are read by :mod:`.sentinel`)."""


def connect(url: str, max_connections: int = 64) -> redis.Redis:
    """A client whose pool waits (briefly) for a free connection rather than opening thousands.

    ``redis://``, ``rediss://`` and ``unix://`` URLs as redis-py reads them;
    ``redis+sentinel://host:port[,host:port...]/service[/db]`` for a primary
    that Sentinel fails over (see :mod:`.sentinel`).
    """
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, "health_check_interval": 15,
                               "retry": RETRY, **QUIET_HANDSHAKE}
    if sentinel.is_url(url):
        return sentinel.connect(url, max_connections, **options)
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5, **options)
    return redis.Redis(connection_pool=pool)


def queued(pipe: Any, script: Any, keys: list[Any], args: list[Any]) -> None:
    """A script's call queued on a pipeline, as ``Script.__call__(client=pipe)`` queues it (the pipeline loads
    the script if Redis lacks it), without that call's ``isinstance`` against redis-py's cluster pipeline: an
    instance check through a ``typing.Protocol`` metaclass, a sixth of what releasing many polls cost."""
    pipe.scripts.add(script)
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def check_url(url: str) -> str:
    """The URL if :func:`connect` can use it; ValueError saying why not (before anything connects)."""
    if sentinel.is_url(url):
        sentinel.parse(url)
        return url
    scheme = url.partition("://")[0].lower()
    if scheme == "redis+cluster":
        raise ValueError("Redis Cluster (redis+cluster://) is not supported yet: give one primary (redis://), "
                         f"or the Sentinels that fail one over ({sentinel.SCHEME}://)")
    if scheme not in SCHEMES:
        raise ValueError(f"a Redis URL starts with redis://, rediss://, unix:// or {sentinel.SCHEME}://, not "
                         f"{scheme}://")  # not the URL itself: it may hold a password
    redis.connection.parse_url(url)
    return url


@contextmanager
def unavailable_as_503() -> Iterator[None]:
    """Around an app's own Redis calls (its data beside longpoll's, ``Backend.build(redis=...)``): Redis away,
    loading or stuck in a script becomes :class:`~longpoll.BackendUnavailable`, a 503 the client retries,
    as it does for longpoll's own calls."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BackendUnavailable(f"Redis is unreachable ({type(exc).__name__})") from None
    except redis.ResponseError as exc:
        if "LOADING" in str(exc) or "BUSY" in str(exc):  # Redis restarting, or a script stuck
            raise BackendUnavailable("Redis is not ready yet") from None
        raise


