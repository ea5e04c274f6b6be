"""The social graph over HTTP: profiles, follow, followers/following, timelines, the home stream.

``/users/<login>...`` is the users node's ``default``; ``/home`` and
``/statuses/home.json`` sit beside the status streams.  Logins and every
paging parameter are checked here, with 400s naming them; writes need the
bearer token (401), as posting does.  The home stream also takes a stream
token in its query string, for ``EventSource`` (``stream_tokens.py``).
"""

from __future__ import annotations

import re
from typing import Any

import cherrypy

from ... import (
    BadParameter,
    Broker,
    MethodNotAllowed,
    NotFound,
    PollLimits,
    Registry,
    integer,
    json_body,
    json_handler,
    json_yield,
    request_params,
    single,
)
from .filters import LOGIN
from .home import HomeFeed, home_feed
from .inputs import bearer_token, bound_identifier, no_more
from .social import SocialLimits, SocialStore
from .stream_tokens import PARAM as STREAM_TOKEN
from .stream_tokens import StreamTokens

CURSOR = re.compile(r"[0-9]{1,16}")

ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

RESERVED = ("index", "default")
"""Logins that are also handler names of the users node: CherryPy consumes them as attributes."""


def _login(value: str) -> str:
    if not LOGIN.fullmatch(value):
        raise BadParameter("login", "1-32 characters of A-Z a-z 0-9 _ . -")
    return value


def _page(params: dict[str, Any], limits: SocialLimits) -> tuple[int, int]:
    return (integer(params, "page", 1, limits.timeline_size, 1),  # past the timeline: empty, not an error
            integer(params, "count", 1, limits.max_count, limits.default_statuses))


def _statuses(statuses: list[dict[str, Any]], page: int, count: int, limits: SocialLimits) -> dict[str, Any]:
    more = len(statuses) == count and page * count < limits.timeline_size
    return {"statuses": statuses, "page": page, "next": page + 1 if more else None}


def _user_path(vpath: tuple[str, ...]) -> tuple[str, ...]:
    """The segments after /users, also for a login CherryPy took for the node's index or default."""
    segments = [s for s in cherrypy.serving.request.path_info.split("/") if s]
    before = segments[:len(segments) - len(vpath)]
    return (before[-1], *vpath) if before and before[-1] in RESERVED else vpath


class UserResources:
    """``/users/<login>`` and below; mounted as the users node's index and default, so ``POST /users``
    (no login) goes on to the signup it was given."""

    exposed = True

    def __init__(self, store: SocialStore, poll_limits: PollLimits, signup: Any):
        self.store = store
        self.poll_limits = poll_limits
        self.signup = signup

    @json_handler(*ANY_METHOD)  # which methods a path allows is known once the path is: below
    def __call__(self, *vpath: str, **kwargs: Any) -> bytes:
        path = _user_path(vpath)
        if not path:
            return self.signup(**kwargs)
        login, what = _login(path[0]), path[1:]
        if len(what) > 1 or what and what[0] not in ("follow", "followers", "following", "statuses"):
            raise NotFound("no such resource")
        method = cherrypy.serving.request.method
        allowed = ("POST", "DELETE") if what == ("follow",) else ("GET",)
        if method not in allowed:
            raise MethodNotAllowed(method, allowed)
        params = request_params(kwargs, self.poll_limits.max_param_chars)
        limits = self.store.social_limits
        if not what:
            no_more(params)
            return json_body(200, self.store.user(login))
        if what == ("follow",):
            token = bearer_token()
            no_more(params)
            if method == "POST":
                self.store.follow(token, login)
            else:
                self.store.unfollow(token, login)
            return json_body(200, {"login": login, "following": method == "POST"})
        if what == ("statuses",):
            page, count = _page(params, limits)
            no_more(params)
            uid = self.store.user(login)["id"]
            return json_body(200, _statuses(self.store.timeline("profile", uid, page, count), page, count, limits))
        count = integer(params, "count", 1, limits.max_count, limits.default_users)
        cursor = single(params, "cursor")
        if cursor is not None and (not isinstance(cursor, (str, int)) or not CURSOR.fullmatch(str(cursor))):
            raise BadParameter("cursor", "must be the next cursor of an earlier page")
        no_more(params)
        users, following = self.store.connections(login, what[0], None if cursor is None else int(cursor), count)
        return json_body(200, {"users": users, "next": None if following is None else str(following)})


class HomeTimeline:
    """``GET /home``: the token's user's home timeline, newest first; ``POST /home/stream-tokens``: a stream
    token for its live stream."""

    def __init__(self, store: SocialStore, poll_limits: PollLimits, tokens: StreamTokens):
        self.store = store
        self.poll_limits = poll_limits
        self.tokens = tokens

    @cherrypy.expose
    @json_handler("GET")
    def default(self, *rest: str, **kwargs: Any) -> bytes:
        if rest:
            raise NotFound("no such resource")
        uid = self.store.authenticate(bearer_token())
        params = request_params(kwargs, self.poll_limits.max_param_chars)
        limits = self.store.social_limits
        page, count = _page(params, limits)
        no_more(params)
        return json_body(200, _statuses(self.store.timeline("home", uid, page, count), page, count, limits))

    @cherrypy.expose
    @json_handler("POST")
    def stream_tokens(self, *rest: str, **kwargs: Any) -> bytes:
        """``POST /home/stream-tokens``, bearer token: a stream token of this user (``seconds`` shortens it)."""
        if rest:
            raise NotFound("no such resource")
        uid = self.store.authenticate(bearer_token())
        params = request_params(kwargs, self.poll_limits.max_param_chars)
        seconds = integer(params, "seconds", 1, self.tokens.lifetime, self.tokens.lifetime)
        no_more(params)
        return json_body(200, self.tokens.issue(uid, seconds))


def home_stream(broker: Broker, store: SocialStore, registry: Registry, poll_limits: PollLimits,
                tokens: StreamTokens) -> Any:
    """``GET /statuses/home.json``: the home long-poll, bound to its identifier and its reader.

    The reader is the user of the ``stream_token`` parameter if there is one (what ``EventSource`` can
    send), else of the bearer token; either way the session is that user's, so polls and streams of one
    session may use either.
    """

    def reader(stream_token: Any) -> int:
        if stream_token is None:
            return store.authenticate(bearer_token())
        return tokens.verify(single({STREAM_TOKEN: stream_token}, STREAM_TOKEN))

    def bind(params: dict[str, Any]) -> str:
        return f"{bound_identifier(params)}@{reader(params.get(STREAM_TOKEN))}"

    def home(identifier: str, backfill: Any = None, stream_token: Any = None) -> HomeFeed:
        count = integer({"backfill": backfill}, "backfill", 0, store.social_limits.max_backfill, 0)
        # Read only when the feed is new: a session built again (here when its feed ran dry, or in another
        # process) has its user in its checkpoint, and the first poll's stream token may have expired since.
        return home_feed(broker, store, lambda: {"identifier": identifier, "uid": reader(stream_token),
                                                 "backfill": count})

    return cherrypy.expose(json_yield(methods=("GET",), name="statuses.home", registry=registry,
                                      poll_limits=poll_limits, bind=bind, limit_per_bind=True)(home))
