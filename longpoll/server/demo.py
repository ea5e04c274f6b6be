"""The demo endpoints ``longpoll serve`` mounts beside the status streams.

``/primes`` is the seed's example: a plain generator, polled batch by batch.
``/topics/<name>`` is the broker over HTTP: GET long-polls a topic, POST
publishes a JSON item to it, and every poller of the topic gets it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import cherrypy

from ..broker import Broker
from ..endpoint import json_handler, json_yield
from ..errors import BadParameter, BadRequest
from ..params import NO_BODY, PollLimits, json_request_body
from ..registry import Registry
from ..responses import json_body

TOPIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PRIMES_LIMIT = 10_000_000


def primes(limit: Any = "1000") -> Iterator[int]:
    """Every prime up to ``limit``, found by trial division against earlier primes."""
    try:
        top = int(limit)
    except (TypeError, ValueError):
        raise BadParameter("limit", f"must be a whole number from 2 to {PRIMES_LIMIT}") from None
    if not 2 <= top <= PRIMES_LIMIT:
        raise BadParameter("limit", f"must be a whole number from 2 to {PRIMES_LIMIT}")
    found: list[int] = []
    for n in range(2, top + 1):
        if all(n % p for p in found if p * p <= n):
            found.append(n)
            yield n


class Demo:
    def __init__(self, broker: Broker, registry: Registry, limits: PollLimits = PollLimits()):
        self.broker = broker
        self.primes = cherrypy.expose(json_yield(registry=registry, poll_limits=limits)(primes))
        self._follow = json_yield(methods=("GET",), registry=registry, poll_limits=limits,
                                  bind=lambda params: params.get("topic"))(self._topic_items)

    def _topic_items(self, topic: str) -> Iterator[Any]:
        with self.broker.subscribe(topic) as sub:
            while True:
                yield from sub.drain()
                yield sub

    @cherrypy.expose
    @json_handler("GET", "POST")
    def topics(self, name: str = "", *rest: str, **params: Any) -> bytes:
        """GET long-polls the topic; POST publishes its JSON body to it."""
        if rest or not TOPIC.fullmatch(name):
            raise BadParameter("topic", "the path must be /topics/<1-64 characters of A-Z a-z 0-9 _ . ->")
        if cherrypy.serving.request.method == "GET":
            return self._follow(topic=name, **params)
        item = json_request_body()
        if item is NO_BODY:
            raise BadRequest("publish the item as a JSON body (Content-Type: application/json)")
        return json_body(201, {"topic": name, "position": self.broker.publish(name, item)})
