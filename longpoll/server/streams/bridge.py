"""Statuses published the seeds' way: ``PUBLISH streaming:status: '<json>'``.

Existing publishers keep working: every server process subscribes to the
channel and hands what arrives straight to its hub.  What this path does not
guarantee, unlike the stream: a message published while a process is
disconnected from Redis never reaches that process, and its order relative
to statuses posted through the HTTP API is not fixed.
"""

from __future__ import annotations

import redis

from ... import Broker, ChannelListener
from .store import TOPIC

CHANNEL = "streaming:status:"


def publish_bridge(client: redis.Redis, broker: Broker, channel: str = CHANNEL) -> ChannelListener:
    """A listener that runs with the broker's hub and injects each published status into it."""
    hub = broker.hub
    bridge = ChannelListener(client, channel, lambda data: hub.inject(TOPIC, data))
    hub.attach(bridge)
    return bridge
