"""Backends: where published items live between the publisher and the hub."""

from __future__ import annotations

from .base import Entry, Log
from .memory import MemoryLog

DEFAULT_RETENTION = 100_000
"""Entries the log keeps for readers that fall behind or reconnect."""

STREAM = "longpoll:log"
"""The Redis Stream of a broker unless it names another."""

__all__ = ["Entry", "Log", "MemoryLog", "DEFAULT_RETENTION", "STREAM"]
