"""Statuses published the seeds' way: ``PUBLISH streaming:status: '<json>'``.

Existing publishers keep working: every server process subscribes to the
channel (one connection each) and hands what arrives straight to its hub.
What this path does not guarantee, unlike the stream: a message published
while a process is disconnected from Redis never reaches that process, and
its order relative to statuses posted through the HTTP API is not fixed.
"""

from __future__ import annotations

import logging
import threading

import cherrypy
import redis
from cherrypy.process import plugins, wspbus
from redis.backoff import EqualJitterBackoff

from ..hub import Hub
from .store import TOPIC

log = logging.getLogger("longpoll")

CHANNEL = "streaming:status:"


class PublishBridge(plugins.SimplePlugin):
    def __init__(self, client: redis.Redis, hub: Hub, bus: wspbus.Bus | None = None, channel: str = CHANNEL):
        super().__init__(bus or cherrypy.engine)
        self.client = client
        self.hub = hub
        self.channel = channel
        self.received = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()
        self.subscribe()
        if self.bus.state == wspbus.states.STARTED:
            self.start()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="longpoll-publish-bridge", daemon=True)
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
                        self.hub.inject(TOPIC, message["data"])
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.subscribed.clear()
                failures += 1
                if failures == 1:
                    log.warning("lost the %s subscription (%s); reconnecting", self.channel, exc)
                self._stopping.wait(backoff.compute(failures))
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass
