"""The status streams over HTTP: publishing, and the sample and filter long-polls.

The streams are ordinary ``json_yield`` endpoints: a session's generator
subscribes to the ``statuses`` topic with its filter and yields what the hub
routes to it.  The identifier is bound to the session: a later poll must
carry the same one (401 without it, 403 with another).  The social graph's
endpoints (``social_app.py``) are mounted beside them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cherrypy
import orjson

from ... import (
    JSON_HEADERS,
    THREADS,
    Answer,
    BadParameter,
    Broker,
    Call,
    Continuation,
    NotFound,
    PollLimits,
    Registry,
    Source,
    Steps,
    json_body,
    json_handler,
    json_yield,
    request_params,
)
from .feed import status_feed
from .filters import LOGIN, FilterLimits, parse_filter, parse_location, parse_sample
from .home import GraphRouter, HomeIndex, SocialRouter
from .hydrators import Hydrators
from .inputs import bearer_token, bound_identifier, no_more, optional_text, required_text
from .social import GRAPH
from .social_app import HomeTimeline, UserResources, home_stream
from .store import TOPIC, Store, StreamStore
from .stream_tokens import StreamTokens
from .timelines import Syndicator

STATUS_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class StreamLimits:
    max_message_chars: int = 1000
    max_name_chars: int = 100
    filters: FilterLimits = FilterLimits()


class Users:
    def __init__(self, store: Store, poll_limits: PollLimits, limits: StreamLimits):
        self.store = store
        self.poll_limits = poll_limits
        self.limits = limits

    @cherrypy.expose
    @json_handler("POST")
    def index(self, **kwargs: Any) -> bytes:
        """POST /users: a new user, and its token, shown only now."""
        params = request_params(kwargs, self.poll_limits.max_param_chars)
        login = required_text(params, "login", 32)
        if not LOGIN.fullmatch(login):
            raise BadParameter("login", "1-32 characters of A-Z a-z 0-9 _ . -")
        name = optional_text(params, "name", self.limits.max_name_chars) or login
        no_more(params)
        return json_body(201, self.store.create_user(login, name))


class Statuses:
    home_json: Any  # the home stream, which StatusStreams mounts beside the others

    def __init__(self, broker: Broker, store: Store, registry: Registry, poll_limits: PollLimits,
                 limits: StreamLimits, hydrators: Hydrators | None = None, syndicator: Syndicator | None = None):
        self.broker = broker
        self.store = store
        self.syndicator = syndicator
        self.hydrators = hydrators
        self.poll_limits = poll_limits
        self.limits = limits
        common: dict[str, Any] = {"registry": registry, "poll_limits": poll_limits, "bind": bound_identifier,
                                  "limit_per_bind": True, "fastpath": True}
        self.sample_json = cherrypy.expose(json_yield(methods=("GET",), name="statuses.sample", **common)(
            self._sample))
        # GET too: EventSource cannot POST, so a stream takes its filter in the query string
        self.filter_json = cherrypy.expose(json_yield(methods=("GET", "POST"), name="statuses.filter", **common)(
            self._filter))

    # -- the long-polls ----------------------------------------------------

    def _sample(self, identifier: str, percent: Any = None) -> Source:
        return status_feed(self.broker, parse_sample(identifier, percent))

    def _filter(self, identifier: str, track: Any = None, follow: Any = None, locations: Any = None,
                location: Any = None) -> Source:
        if locations is not None and location is not None:
            raise BadParameter("location", "give locations or its alias location, not both")
        boxes = "location" if location is not None else "locations"  # errors name the one given
        return status_feed(self.broker, parse_filter(track, follow, location if location is not None else locations,
                                                     self.limits.filters, boxes))

    # -- publishing --------------------------------------------------------

    @cherrypy.expose
    @json_handler("POST")
    def index(self, **kwargs: Any) -> bytes:
        """POST /statuses: post a status as the token's user (as :meth:`post` does on the event loop: the
        same steps, run on this thread)."""
        status, headers, body = THREADS.run(self._posted(
            bearer_token, lambda: request_params(kwargs, self.poll_limits.max_param_chars)))
        response = cherrypy.serving.response
        response.status = status
        response.headers.update(headers)
        return body  # type: ignore[return-value]  # bytes: an answer, never a stream

    def post(self, asked: Continuation, raw: bytes | None) -> Steps[Answer] | None:
        """``POST /statuses`` answered by the front itself, its body read there (a LongPollError raised in
        the steps is their answer); a body only CherryPy reads (multipart, say) is left to :meth:`index`."""
        if not asked.readable(raw):
            return None
        header = asked.headers.get("authorization", "")
        return self._posted(lambda: bearer_token(header), lambda: asked.params(raw, self.poll_limits.max_param_chars))

    def _posted(self, token_of: Callable[[], str], params_of: Callable[[], dict[str, Any]]) -> Steps[Answer]:
        token = token_of()  # first, as CherryPy's handler has always checked it
        params = params_of()
        message = required_text(params, "message", self.limits.max_message_chars)
        location = optional_text(params, "location", 64)
        if location is not None:
            if parse_location(location) is None:
                raise BadParameter("location", '"lat,lon" with latitude -90..90 and longitude -180..180')
            location = location.replace(" ", "")
        no_more(params)
        self._syndicate()
        # Off the loop's thread: the store's round trips (and a hydrator's) may be slow.
        status = yield Call(self.store.post_status, token, message, location, self.hydrators or None,
                            batch=self.store.posts, off_loop=True)
        return 201, JSON_HEADERS, orjson.dumps(status)

    @cherrypy.expose
    @json_handler("GET", "DELETE")
    def default(self, status_id: str = "", *rest: str, **kwargs: Any) -> bytes:
        """GET or DELETE /statuses/<id>."""
        if rest or not STATUS_ID.fullmatch(status_id):
            raise NotFound("no such status")
        if cherrypy.serving.request.method == "GET":
            return json_body(200, self.store.get_status(int(status_id)))
        self._syndicate()
        return json_body(200, self.store.delete_status(bearer_token(), int(status_id)))

    def _syndicate(self) -> None:
        """Posts and deletes queue fan-out jobs: from the first one on, this process works them off too."""
        if self.syndicator is not None:
            self.syndicator.ensure()


class StatusStreams:
    """What ``longpoll serve`` mounts for the status streams: /users, /statuses and /home.

    ``hydrators`` enrich each status as it is posted (see ``hydrators.py``).
    """

    def __init__(self, broker: Broker, store: StreamStore, registry: Registry,
                 poll_limits: PollLimits = PollLimits(), limits: StreamLimits = StreamLimits(),
                 hydrators: Hydrators | None = None):
        home = HomeIndex()
        broker.hub.route(TOPIC, SocialRouter(home))
        broker.hub.route(GRAPH, GraphRouter(broker.hub, home))
        self.hydrators = hydrators if hydrators is not None else Hydrators()
        self.users = Users(store, poll_limits, limits)
        self.users.index = self.users.default = UserResources(store, poll_limits, self.users.index)  # type: ignore
        self.syndicator = Syndicator(store)
        self.statuses = Statuses(broker, store, registry, poll_limits, limits, self.hydrators, self.syndicator)
        tokens = StreamTokens(functools.partial(broker.backend.secret, "stream-token"), salts=store)
        self.statuses.home_json = home_stream(broker, store, registry, poll_limits, tokens)
        self.home = HomeTimeline(store, poll_limits, tokens)
