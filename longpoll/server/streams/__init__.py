"""The status streams of *Redis in Action* chapter 8, as long-polls, and its social graph."""

from __future__ import annotations

from ...broker import Broker
from .app import StatusStreams, StreamLimits
from .filters import FilterLimits
from .hydrators import Hydrators
from .social import SocialLimits
from .store import MemoryStore, StreamStore


def open_store(broker: Broker, social_limits: SocialLimits = SocialLimits()) -> StreamStore:
    """The store on the broker's own backend, under its prefix (on Redis, with the seeds' PUBLISH bridge
    into the broker's hub, as ``store.bridge``)."""
    if broker.kind == "memory":
        return MemoryStore(broker.log, social_limits)
    from .bridge import publish_bridge
    from .redis_store import RedisStore

    store = RedisStore(broker.redis, broker.log, social_limits, broker.backend.prefix)
    store.bridge = publish_bridge(broker.redis, broker.hub)
    return store


__all__ = ["StatusStreams", "StreamLimits", "FilterLimits", "SocialLimits", "Hydrators", "open_store"]
