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
from redis.backoff import EqualJitterBackoff

log = logging.getLogger("longpoll")


class ChannelListener:
    def __init__(self, client: redis.Redis, channel: str, handle: Callable[[bytes], None]):
        self.client = client
        self.channel = channel
        self.handle = handle
        self.received = 0
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"longpoll-channel {self.channel}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        backoff = EqualJitterBackoff(cap=5.0, base=0.1)
        failures = 0
        while not self._stopping.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.subscribed.set()
                failures = 0
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        self.received += 1
                        try:
                            self.handle(message["data"])
                        except Exception:
                            log.exception("handling a message of %s failed", self.channel)
            except Exception as exc:  # connection errors, and anything else: reconnect, never die
                self.subscribed.clear()
                failures += 1
                if failures == 1:
                    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                        log.warning("lost the %s subscription (%s); reconnecting", self.channel, exc)
                    else:
                        log.exception("the %s subscription failed; reconnecting", self.channel)
                self._stopping.wait(backoff.compute(failures))
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass
