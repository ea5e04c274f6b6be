"""The status streams of *Redis in Action* chapter 8, as long-polls, and its social graph."""

from __future__ import annotations

from ..broker import Broker
from .app import StatusStreams, StreamLimits
from .filters import FilterLimits
from .hydrators import Hydrators
from .social import SocialLimits
from .store import MemoryStore, Store


def open_store(broker: Broker, social_limits: SocialLimits = SocialLimits(), prefix: str = "longpoll:") -> Store:
    """The store that goes with the broker's backend (and, on Redis, the PUBLISH bridge; ``prefix``
    starts the name of each key of the store's)."""
    if broker.redis is None:
        return MemoryStore(broker.log, social_limits)  # type: ignore[arg-type]
    from .bridge import publish_bridge
    from .redis_store import RedisStore

    broker.bridge = publish_bridge(broker.redis, broker.hub)  # type: ignore[attr-defined]
    return RedisStore(broker.redis, broker.log, social_limits, prefix)  # type: ignore[arg-type]


__all__ = ["StatusStreams", "StreamLimits", "FilterLimits", "SocialLimits", "Hydrators", "open_store"]
