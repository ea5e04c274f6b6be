"""What ``longpoll serve`` is told: every option, with its default (``options.py`` reads them from flags,
the environment and a config file; ``granian.py`` hands them to each worker)."""

from __future__ import annotations

from dataclasses import dataclass

from ..backends import PREFIX
from ..backends.base import DEFAULT_IDEMPOTENCY_WINDOW
from ..broker import DEFAULT_BUFFER
from ..budget import MAX_STREAM_BYTES


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None
    idle_timeout: float = 60.0
    max_sessions: int = 10_000
    max_sessions_per_identifier: int = 20
    max_sessions_per_address: int = 1000
    trusted_proxies: tuple[str, ...] = ()
    max_polls_per_second: float = 50.0
    max_timeout: float = 60.0  # longest a poll may be held (docs/protocol.md: at most 60)
    max_stream_seconds: float = 300.0  # a stream ends after this long, so proxies recycle connections
    heartbeat: float = 15.0  # a stream's heartbeat after this long without sending
    max_held_polls: int | None = None  # default: as many as there are sessions (a held poll is a future)
    max_stream_bytes: int = MAX_STREAM_BYTES  # what all of a worker's streams may hold unsent (budget.py)
    read_timeout: float = 10.0  # a request's whole head, and its body (408); also an idle kept-alive connection
    max_connections: int = 20_000  # connections a worker holds open (granian's backpressure)
    max_body_bytes: int = 64 * 1024
    buffer: int = DEFAULT_BUFFER
    prefix: str = PREFIX  # every Redis key the server writes starts with it
    retention: int = 100_000  # statuses (and follow events) kept for hubs behind and sessions resuming
    topic_retention: int = 10_000  # the demo's anonymous /topics, all together: with max_topic_item_bytes, 80 MiB
    topic_history: int = 1000  # each /topics topic's own history, for backfill= and sessions resuming
    topic_ttl: float = 3600.0  # a /topics topic's history goes this long after its last item (Redis)
    max_topic_item_bytes: int = 8192
    idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW  # a /topics publish's Idempotency-Key is remembered so long
    access_log: bool = False
    cors_origins: tuple[str, ...] = ()
    route: str | None = None  # this process's name in its process-local keys, for a proxy to route them by
    workers: int = 1  # granian worker processes, each with its event loop; above 1 needs redis_url
    fastpath: bool = True  # continuation polls answered on the event loop, without CherryPy's request
