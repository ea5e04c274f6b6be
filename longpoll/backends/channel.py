"""One thread reading a Redis pub/sub channel, reconnecting with backoff.

Pub/sub is for what may be missed while a process is disconnected: the
seeds' ``PUBLISH streaming:status:`` path, and the note that a newer poll of
a session began in another process (``durable.py``; missing it only delays
the older poll's answer, never its correctness).  Whatever the handler
raises is logged and the listener carries on: a bad message must not end the
only reader of the channel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from ..background import Worker

log = logging.getLogger("longpoll")


class ChannelListener:
    """Hands each message of a Redis pub/sub channel to ``handle(data)``, on one thread that runs from
    ``start()`` to ``stop()`` (with a hub, ``broker.hub.attach(listener)``, or the engine,
    :func:`~longpoll.attach`) and reconnects after an outage; ``subscribed`` is set while it listens."""

    def __init__(self, client: redis.Redis, channel: str, handle: Callable[[bytes], None]):
        self.client = client
        self.channel = channel
        self.handle = handle
        self.subscribed = threading.Event()
        self._worker = Worker(f"longpoll-channel {channel}", self._listen, failed=self._lost)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def _listen(self) -> None:
        """One subscription, until it breaks or the listener stops."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            self.subscribed.set()
            self._worker.succeeded()
            while not self._worker.stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message and message["type"] == "message":
                    try:
                        self.handle(message["data"])
                    except Exception:
                        log.exception("handling a message of %s failed", self.channel)
        finally:
            self.subscribed.clear()
            try:
                pubsub.close()
            except Exception:
                pass

    def _lost(self, exc: BaseException, failures: int) -> None:
        """Connection errors, and anything else: reconnect, never die; said once per outage."""
        if failures > 1:
            return
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            log.warning("lost the %s subscription (%s); reconnecting", self.channel, exc)
        else:
            log.exception("the %s subscription failed; reconnecting", self.channel, exc_info=exc)
