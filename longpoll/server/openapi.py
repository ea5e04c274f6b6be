"""The OpenAPI 3.1 description of ``longpoll serve``'s HTTP API, served at /openapi.json.

Built from the server's own limits, so the document never promises a range
the server refuses; fuzzing (tests/test_fuzz.py) holds the server to it:
no 5xx but the documented 503, and every error in the documented shape.
"""

from __future__ import annotations

from typing import Any

from .. import params
from ..backends.base import MAX_IDEMPOTENCY_KEY
from ..params import PollLimits
from .streams import filters
from .streams.app import StreamLimits
from .streams.social import SocialLimits
from .streams.social_app import CURSOR as FOLLOW_CURSOR
from .streams.stream_tokens import LIFETIME as STREAM_TOKEN_SECONDS

# The server's own patterns, anchored: the document cannot drift from the checks.
IDENTIFIER = {"type": "string", "pattern": f"^{params.IDENTIFIER.pattern}$"}
KEY = {"type": ["string", "null"], "pattern": f"^({params.KEY.pattern})?$"}  # empty or null: a new session
CURSOR = {"type": ["string", "null"], "pattern": f"^({params.CURSOR.pattern})?$"}
LOGIN = {"type": "string", "pattern": f"^{filters.LOGIN.pattern}$"}
LAT_LON = r"^(-?[0-9]{1,2}(\.[0-9]+)?,-?[0-9]{1,3}(\.[0-9]+)?)?$"  # empty: no location


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json({"$ref": "#/components/schemas/Error"})}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "a parameter is malformed or out of range (param names it)",
        401: "identifier, API token or stream token missing or invalid",
        403: "the key belongs to another identifier or resource, or the status to another user",
        404: "no such resource",
        405: "wrong method",
        409: "conflict",
        410: "session key unknown or expired: start a new session",
        413: "request body too large",
        414: "request line too long (at most 64 KiB)",
        429: "too many sessions, or polls too fast (Retry-After)",
        503: "the backend is unreachable (Retry-After)",
    }
    return {str(status): _error(texts[status]) for status in statuses}


def _poll_parameters(limits: PollLimits) -> list[dict[str, Any]]:
    return [
        {"name": "key", "in": "query", "schema": {"type": "string", "pattern": KEY["pattern"]},
         "description": "session key from an earlier response; absent starts a session"},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": CURSOR["pattern"]},
         "description": "the cursor of the last response; required with key"},
        {"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 0,
                                                      "maximum": limits.max_timeout}},
        {"name": "max", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": limits.max_max}},
    ]


def _poll_body(limits: PollLimits, extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """JSON or form: the same object either way (null means absent)."""
    properties = {
        "key": KEY,
        "cursor": CURSOR,
        "timeout": {"type": ["number", "null"], "minimum": 0, "maximum": limits.max_timeout},
        "max": {"type": ["integer", "null"], "minimum": 1, "maximum": limits.max_max},
        **extra,
    }
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required,
                              "additionalProperties": False}
    if "location" in extra:
        schema["not"] = {"required": ["locations", "location"]}  # an alias, not a second value
    return {"required": bool(required), "content": {"application/json": {"schema": schema},
                                          "application/x-www-form-urlencoded": {"schema": schema}}}


POLLED = {"200": {"description": "the next batch (or an empty one after timeout)",
                  **_json({"$ref": "#/components/schemas/Poll"})}}


def _social_paths(poll: list[dict[str, Any]], limits: SocialLimits) -> dict[str, Any]:
    """The social graph's endpoints (docs/protocol.md, "The social graph")."""
    login = [{"name": "login", "in": "path", "required": True, "schema": LOGIN}]
    count = {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": limits.max_count}}
    paging = [{"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                          "maximum": limits.timeline_size}}, count]
    statuses = {"200": {"description": "newest first", **_json({"$ref": "#/components/schemas/StatusPage"})}}
    followed = {"200": {"description": "done (doing it twice is not an error)", **_json({
        "type": "object", "required": ["login", "following"],
        "properties": {"login": {"type": "string"}, "following": {"type": "boolean"}}})},
        **_errors(400, 401, 404, 503)}
    users = {"get": {"summary": "a page of the user's followers (or whom they follow), newest first",
                     "parameters": [count, {"name": "cursor", "in": "query", "schema": {
                         "type": "string", "pattern": f"^{FOLLOW_CURSOR.pattern}$"},
                         "description": "next from the previous page"}],
                     "responses": {"200": {"description": "a page", **_json({"$ref": "#/components/schemas/UserPage"})},
                                   **_errors(400, 404, 503)}}}
    return {
        "/users/{login}": {"parameters": login, "get": {
            "summary": "a user's profile", "responses": {
                "200": {"description": "the profile", **_json({"$ref": "#/components/schemas/Profile"})},
                **_errors(400, 404, 503)}}},
        "/users/{login}/follow": {"parameters": login,
                                  "post": {"summary": "follow the user (the book's follow_user)",
                                           "security": [{"token": []}], "responses": followed},
                                  "delete": {"summary": "unfollow the user (the book's unfollow_user)",
                                             "security": [{"token": []}], "responses": followed}},
        "/users/{login}/followers": {"parameters": login, **users},
        "/users/{login}/following": {"parameters": login, **users},
        "/users/{login}/statuses": {"parameters": login, "get": {
            "summary": "the user's profile timeline", "parameters": paging,
            "responses": {**statuses, **_errors(400, 404, 503)}}},
        "/home": {"get": {"summary": "the token's user's home timeline", "security": [{"token": []}],
                          "parameters": paging, "responses": {**statuses, **_errors(400, 401, 503)}}},
        "/home/stream-tokens": {"post": {
            "summary": "a stream token: the token's user's credential for /statuses/home.json in a URL, "
                       "where EventSource can send it (short-lived; see SECURITY.md)",
            "security": [{"token": []}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {"seconds": {
                    "type": ["integer", "null"], "minimum": 1, "maximum": STREAM_TOKEN_SECONDS,
                    "description": "a shorter life than the longest, which is the default"}}}}}},
            "responses": {"200": {"description": "the token, and when it expires (Unix seconds)", **_json({
                "type": "object", "required": ["token", "expires", "expires_in"], "properties": {
                    "token": {"type": "string"}, "expires": {"type": "integer"},
                    "expires_in": {"type": "integer", "minimum": 1, "maximum": STREAM_TOKEN_SECONDS}}})},
                **_errors(400, 401, 413, 503)}}},
        "/statuses/home.json": {"get": {
            "summary": "long-poll the statuses of the people the token's user follows, and the user's own",
            "description": "Authenticated by the API token (Authorization: Bearer), or by a stream token in the "
                           "query string (stream_token=, from POST /home/stream-tokens), which is what EventSource "
                           "can send; an expired stream token answers 401 stream_token_expired: get a new one and "
                           "resume with the same key and cursor.",
            "security": [{"token": []}, {"streamToken": []}],
            "parameters": [{"name": "identifier", "in": "query", "required": True, "schema": IDENTIFIER},
                           {"name": "backfill", "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": limits.max_backfill}}, *poll],
            "responses": {**POLLED, **_errors(400, 401, 403, 410, 429, 503)}}},
    }


def document(limits: PollLimits = PollLimits(), stream_limits: StreamLimits = StreamLimits(),
             social_limits: SocialLimits = SocialLimits()) -> dict[str, Any]:
    poll = _poll_parameters(limits)
    filters = stream_limits.filters
    text_list = {"anyOf": [{"type": "string", "maxLength": limits.max_param_chars},
                           {"type": "array", "items": {"type": "string"}, "maxItems": 1000}, {"type": "null"}]}
    boxes = {"anyOf": [{"type": "string", "maxLength": limits.max_param_chars},
                       {"type": "array", "items": {"type": ["string", "number"]}, "maxItems": 1000},
                       {"type": "null"}]}
    bearer: list[dict[str, list[str]]] = [{"token": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "longpoll", "version": "1",
                 "description": "Real-time updates over HTTP long-polling; the wire contract is docs/protocol.md."},
        "paths": {
            "/primes": {
                "get": {"summary": "the demo generator: every prime up to limit, batch by batch",
                        "parameters": [*poll, {"name": "limit", "in": "query",
                                               "schema": {"type": "integer", "minimum": 2, "maximum": 10_000_000}}],
                        "responses": {**POLLED, **_errors(400, 403, 410, 429)}},
                "post": {"summary": "the same, with the parameters in the body",
                         "requestBody": _poll_body(limits, {"limit": {
                             "type": ["integer", "null"], "minimum": 2, "maximum": 10_000_000}}, []),
                         "responses": {**POLLED, **_errors(400, 403, 410, 413, 429)}},
            },
            "/topics/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}}],
                "get": {"summary": "long-poll a topic", "parameters": poll,
                        "responses": {**POLLED, **_errors(400, 403, 410, 429, 503)}},
                "post": {"summary": "publish a JSON item to a topic",
                         "description": "At-least-once without an Idempotency-Key: a retry stores the item "
                                        "again. With one, the item is stored once: a retry within the server's "
                                        "--idempotency-window answers the first publish's position.",
                         "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                         "description": "the same for every retry of one publish",
                                         "schema": {"type": "string", "minLength": 1,
                                                    "maxLength": MAX_IDEMPOTENCY_KEY}}],
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
                         "responses": {"201": {"description": "published", **_json({
                             "type": "object", "required": ["topic", "position"],
                             "properties": {"topic": {"type": "string"}, "position": {"type": "string"}}})},
                             **_errors(400, 413, 503)}},
            },
            "/statuses/sample.json": {
                "get": {"summary": "long-poll a sample of all statuses",
                        "parameters": [{"name": "identifier", "in": "query", "required": True, "schema": IDENTIFIER},
                                       {"name": "percent", "in": "query",
                                        "schema": {"type": "integer", "minimum": 1, "maximum": 100}}, *poll],
                        "responses": {**POLLED, **_errors(400, 401, 403, 410, 429, 503)}},
            },
            "/statuses/filter.json": {
                "get": {"summary": "the same with the filter in the query string (EventSource cannot POST); "
                                   "the request line is at most 64 KiB: longer filters go in a POST body",
                        "parameters": [{"name": "identifier", "in": "query", "required": True, "schema": IDENTIFIER},
                                       *({"name": name, "in": "query", "schema": {
                                           "type": "string", "maxLength": 2000, "pattern": "^[ -~]*$"}}
                                         for name in ("track", "follow", "locations")), *poll],
                        "responses": {**POLLED, **_errors(400, 401, 403, 410, 414, 429, 503)}},
                "post": {"summary": "long-poll the statuses matching track, follow or locations",
                         "requestBody": _poll_body(limits, {
                             "identifier": IDENTIFIER, "track": text_list, "follow": text_list,
                             "locations": boxes, "location": boxes}, ["identifier"]),
                         "responses": {**POLLED, **_errors(400, 401, 403, 410, 413, 429, 503)}},
            },
            "/users": {
                "post": {"summary": "create a user; its API token is shown only now",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["login"], "additionalProperties": False,
                             "properties": {"login": LOGIN, "name": {
                                 "type": ["string", "null"], "maxLength": stream_limits.max_name_chars}}}}}},
                         "responses": {"201": {"description": "created", **_json({
                             "type": "object", "required": ["id", "login", "token"],
                             "properties": {"id": {"type": "integer"}, "login": {"type": "string"},
                                            "token": {"type": "string"}}})},
                             **_errors(400, 409, 413, 503)}},
            },
            "/statuses": {
                "post": {"summary": "post a status", "security": bearer,
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["message"], "additionalProperties": False,
                             "properties": {"message": {"type": "string", "minLength": 1,
                                                        "maxLength": stream_limits.max_message_chars},
                                            "location": {"type": ["string", "null"], "maxLength": 64,
                                                         "pattern": LAT_LON,
                                                         "description": '"lat,lon"'}}}}}},
                         "responses": {"201": {"description": "posted",
                                               **_json({"$ref": "#/components/schemas/Status"})},
                                       **_errors(400, 401, 413, 503)}},
            },
            "/statuses/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 0}}],
                "get": {"summary": "one status",
                        "responses": {"200": {"description": "the status",
                                              **_json({"$ref": "#/components/schemas/Status"})},
                                      **_errors(404, 503)}},
                "delete": {"summary": "delete one of your statuses", "security": bearer,
                           "responses": {"200": {"description": "deleted", **_json({
                               "type": "object", "required": ["id", "deleted"],
                               "properties": {"id": {"type": "integer"}, "deleted": {"const": True}}})},
                               **_errors(401, 403, 404, 503)}},
            },
            **_social_paths(poll, social_limits),
            "/healthz": {"get": {"summary": "200 when the server can serve", "responses": {
                "200": {"description": "ok", **_json({"type": "object"})}, **_errors(503)}}},
            "/stats": {"get": {"summary": "counters", "responses": {
                "200": {"description": "counters", **_json({"type": "object", "required": [
                    "sessions", "polls", "items_delivered", "items_dropped", "sessions_expired"]})}}}},
            "/metrics": {"get": {"summary": "the counters in Prometheus text format", "responses": {
                "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"},
                                "streamToken": {"type": "apiKey", "in": "query", "name": "stream_token"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string"}, "message": {"type": "string"}, "param": {"type": "string"},
                    "state": {"const": "expired"}, "retry_ms": {"type": "integer"}}},
                "Poll": {"type": "object", "required": ["state", "key", "cursor", "items"], "properties": {
                    "state": {"enum": ["ready", "done"]}, "key": {"type": "string", "minLength": 22},
                    "cursor": {"type": "string"}, "items": {"type": "array", "maxItems": limits.max_max},
                    "dropped": {"type": "integer", "minimum": 0}, "retry_ms": {"type": "integer", "minimum": 0}}},
                "Status": {"type": "object", "required": ["id", "uid", "login", "message", "posted"], "properties": {
                    "id": {"type": "integer"}, "uid": {"type": "integer"}, "login": {"type": "string"},
                    "message": {"type": "string"}, "posted": {"type": "number"}, "location": {"type": "string"}},
                    "description": "hydrators may add fields (longpoll serve: the author's name)"},
                "StatusPage": {"type": "object", "required": ["statuses", "page", "next"], "properties": {
                    "statuses": {"type": "array", "items": {"$ref": "#/components/schemas/Status"},
                                 "maxItems": social_limits.max_count},
                    "page": {"type": "integer"}, "next": {"type": ["integer", "null"]}}},
                "Profile": {"type": "object", "required": ["id", "login", "name", "followers", "following", "posts",
                                                           "signup"], "properties": {
                    "id": {"type": "integer"}, "login": {"type": "string"}, "name": {"type": "string"},
                    "followers": {"type": "integer", "minimum": 0}, "following": {"type": "integer", "minimum": 0},
                    "posts": {"type": "integer", "minimum": 0}, "signup": {"type": "number"}}},
                "UserPage": {"type": "object", "required": ["users", "next"], "properties": {
                    "users": {"type": "array", "maxItems": social_limits.max_count, "items": {
                        "type": "object", "required": ["id", "login", "name", "since"], "properties": {
                            "id": {"type": "integer"}, "login": {"type": "string"}, "name": {"type": "string"},
                            "since": {"type": "number"}}}},
                    "next": {"type": ["string", "null"]}}},
            },
        },
        "x-limits": {"max_track_phrases": filters.max_phrases, "max_phrase_chars": filters.max_phrase_chars,
                     "max_follow": filters.max_follow, "max_boxes": filters.max_boxes,
                     "max_following": social_limits.max_following, "timeline_size": social_limits.timeline_size},
    }
