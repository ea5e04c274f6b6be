"""The status streams of *Redis in Action* chapter 8, as long-polls, and its social graph."""

from __future__ import annotations

from typing import Any

from ... import Broker
from .app import StatusStreams, StreamLimits
from .filters import FilterLimits
from .hydrators import Hydrators
from .social import SocialLimits
from .store import MemoryStore, StreamStore


def open_store(broker: Broker, social_limits: SocialLimits = SocialLimits()) -> StreamStore:
    """The store on the broker's own backend, under its prefix (on Redis, with the seeds' PUBLISH bridge
    into the broker's hub, as ``store.bridge``)."""
    store: StreamStore = broker.backend.build(memory=lambda: MemoryStore(broker.log, social_limits),
                                              redis=lambda client: _on_redis(client, broker, social_limits))
    return store


def _on_redis(client: Any, broker: Broker, social_limits: SocialLimits) -> StreamStore:
    from .bridge import publish_bridge
    from .redis_store import RedisStore
    from .social_redis import ScriptLog

    log = broker.log
    if not isinstance(log, ScriptLog):
        raise TypeError(f"the statuses' scripts append to the log themselves, which {type(log).__name__} cannot")
    store = RedisStore(client, log, social_limits, broker.backend.prefix)
    store.bridge = publish_bridge(client, broker)
    return store


__all__ = ["StatusStreams", "StreamLimits", "FilterLimits", "SocialLimits", "Hydrators", "open_store"]
