"""Statuses published the seeds' way: ``PUBLISH streaming:status: '<json>'``.

Existing publishers keep working: every server process subscribes to the
channel and hands what arrives straight to its hub.  What this path does not
guarantee, unlike the stream: a message published while a process is
disconnected from Redis never reaches that process, and its order relative
to statuses posted through the HTTP API is not fixed.
"""

from __future__ import annotations

import redis

from ...backends.channel import ChannelListener
from ...hub import Hub
from .store import TOPIC

CHANNEL = "streaming:status:"


def publish_bridge(client: redis.Redis, hub: Hub, channel: str = CHANNEL) -> ChannelListener:
    """A listener that runs with the hub and injects each published status into it."""
    bridge = ChannelListener(client, channel, lambda data: hub.inject(TOPIC, data))
    hub.attach(bridge)
    return bridge
