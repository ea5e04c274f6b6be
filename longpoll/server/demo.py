"""The demo endpoints ``longpoll serve`` mounts beside the status streams.

``/primes`` is the seed's example: a plain generator, polled batch by batch.
``/topics/<name>`` is the broker over HTTP: GET long-polls a topic (a feed:
its sessions are durable on Redis; ``backfill=N`` starts with the newest N
items), POST publishes a JSON item to it, and every poller of the topic gets
it.  A POST with an ``Idempotency-Key`` header is stored once however often
it is retried (within the broker's window); one without is at-least-once.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import cherrypy
import orjson

from .. import responses
from ..broker import Broker, idempotency_key
from ..endpoint import json_handler, json_yield
from ..errors import BadParameter, BadRequest
from ..params import NO_BODY, PollLimits, integer, json_request_body, media_type, parse_json_body
from ..registry import Registry
from ..responses import Answer
from ..routes import Continuation
from ..waits import THREADS, Steps

MAX_BACKFILL = 1000

IDEMPOTENCY_KEY = "Idempotency-Key"
"""The header whose value makes a publish's retries store nothing more (``broker.publish(key=...)``)."""

TOPIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PRIMES_LIMIT = 10_000_000


def primes(limit: Any = "1000") -> Iterator[int]:
    """Every prime up to ``limit``, batch by batch, at the same cost per batch however far it has gone."""
    try:
        top = int(limit)
    except (TypeError, ValueError):
        raise BadParameter("limit", f"must be a whole number from 2 to {PRIMES_LIMIT}") from None
    if not 2 <= top <= PRIMES_LIMIT:
        raise BadParameter("limit", f"must be a whole number from 2 to {PRIMES_LIMIT}")
    return itertools.takewhile(lambda p: p <= top, _sieve())


def _sieve() -> Iterator[int]:
    """The incremental sieve of Eratosthenes, postponed: each number costs O(1) on average, and the
    state is one dict entry per prime up to the square root of where it is (trial division against
    every prime found so far cost more with each poll, without bound)."""
    yield from (2, 3, 5, 7)
    composites: dict[int, Iterator[int]] = {}  # next odd multiple -> the rest of that prime's multiples
    base = _sieve()  # the primes whose squares are still ahead
    next(base)
    p = next(base)  # 3
    square = p * p
    for n in itertools.count(9, 2):
        if n in composites:
            multiples = composites.pop(n)
        elif n < square:
            yield n
            continue
        else:  # n is the square of the next base prime: start striking its multiples
            multiples = itertools.count(square + 2 * p, 2 * p)
            p = next(base)
            square = p * p
        for m in multiples:
            if m not in composites:
                break
        composites[m] = multiples


def checked(topic: str) -> str:
    """A topic named in a path, or the 400 that says which are."""
    if not TOPIC.fullmatch(topic):
        raise BadParameter("topic", "the path must be /topics/<1-64 characters of A-Z a-z 0-9 _ . ->")
    return topic


class Demo:
    def __init__(self, broker: Broker, registry: Registry, limits: PollLimits = PollLimits()):
        self.broker = broker
        self.primes = cherrypy.expose(json_yield(registry=registry, poll_limits=limits, replay=True)(primes))
        self.follow = json_yield(methods=("GET",), registry=registry, poll_limits=limits, name="topics",
                                 fastpath=True)(self._topic_items)

    def _topic_items(self, topic: str, backfill: Any = "0") -> Iterator[Any]:
        """A topic's items, from now on (or its newest ``backfill`` first): durable on Redis."""
        checked(topic)
        count = integer({"backfill": backfill}, "backfill", 0, MAX_BACKFILL, 0)
        return self.broker.feed(topic, backfill=count)

    @cherrypy.expose
    @json_handler("GET", "POST")
    def topics(self, name: str = "", *rest: str, **params: Any) -> bytes:
        """GET long-polls the topic; POST publishes its JSON body to it (as :meth:`publish` does on the
        event loop: the same steps, run on this thread)."""
        checked("/".join((name, *rest)))
        if cherrypy.serving.request.method == "GET":
            return self.follow(name, **params)  # the path's topic, as the fast path gives it
        status, headers, body = THREADS.run(self._published(
            name, json_request_body(), cherrypy.serving.request.headers.get(IDEMPOTENCY_KEY)))
        response = cherrypy.serving.response
        response.status = status
        response.headers.update(headers)
        return body  # type: ignore[return-value]  # bytes: an answer, never a stream

    def publish(self, asked: Continuation, raw: bytes | None) -> Steps[Answer]:
        """``POST /topics/<name>`` answered by the front itself, its body read there: no CherryPy request (a
        LongPollError raised is its answer, as ``routes.answered`` makes it)."""
        name = checked(asked.args[0])
        kind = media_type(asked.headers.get("content-type", ""))
        item = parse_json_body(raw or b"") if kind == "application/json" else NO_BODY
        return (yield from self._published(name, item, asked.headers.get(IDEMPOTENCY_KEY.lower())))

    def _published(self, name: str, item: Any, key: str | None) -> Steps[Answer]:
        """The answer to a publish; a retry with the first one's key answers the first one's position."""
        if key is not None:
            idempotency_key(key, IDEMPOTENCY_KEY)
        if item is NO_BODY:
            raise BadRequest("publish the item as a JSON body (Content-Type: application/json)")
        position = yield from self.broker.publishing(name, item, key=key)
        return 201, responses.JSON_HEADERS, orjson.dumps({"topic": name, "position": position})
