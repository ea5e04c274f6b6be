"""Reading request parameters strictly, with errors that name the parameter.

Parameters arrive in the query string, a form body or a JSON object body
(docs/protocol.md); they are merged into one dict first, and a name given twice is
an error rather than a silent pick.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cherrypy

from .errors import BadParameter, BadRequest, PayloadTooLarge, RequestTimeout, Unauthorized

IDENTIFIER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KEY = re.compile(r"[A-Za-z0-9_-]{1,256}")  # keys.MAX_KEY_CHARS
CURSOR = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
DECIMAL = re.compile(r" *[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)? *")
WHOLE = re.compile(r" *[+-]?[0-9]{1,18} *")
"""Numbers as a person types them in ASCII: no ``_``, other scripts' digits or tabs,
which Python's float() and int() accept but a client in another language would not."""
IGNORED = frozenset({"_"})
"""jQuery's cache buster (``cache: false`` adds ``_=<time>``)."""


@dataclass(frozen=True)
class PollLimits:
    """The bounds of the protocol's poll parameters; every one configurable."""

    default_timeout: float = 25.0
    max_timeout: float = 60.0
    default_max: int = 100
    max_max: int = 1000
    max_param_chars: int = 8192
    heartbeat: float = 15.0  # a stream sends a heartbeat when it has sent nothing for this long
    max_stream_seconds: float = 300.0  # a stream ends after this long, so proxies recycle connections
    max_batch_bytes: int = 256 * 1024  # a batch ends once its items reach this many bytes of JSON


@dataclass(frozen=True)
class PollParams:
    key: str | None
    cursor: str | None
    timeout: float
    max_items: int


NO_BODY = object()
"""What json_request_body returns for a request without a JSON body (JSON null is a body)."""


def _refusing_malformed(process: Callable[[Any], None]) -> Callable[[Any], None]:
    def guarded(entity: Any) -> None:
        try:
            process(entity)
        except (ValueError, UnicodeDecodeError, LookupError) as exc:
            raise cherrypy.HTTPError(400, f"malformed request body: {exc}") from None

    return guarded


def prepare_body() -> None:
    """``hooks.before_request_body``: read bodies without surprises.

    A POST with neither Content-Length nor Transfer-Encoding has an empty body
    (RFC 9112 6.3); CherryPy would answer 411, which trips up ``curl -X POST``.
    A body declared larger than allowed is a 413 at once.  A malformed
    multipart body (no boundary, say) is a 400, not CherryPy's 500.
    """
    request = cherrypy.serving.request
    if "Content-Length" not in request.headers and "Transfer-Encoding" not in request.headers:
        request.process_request_body = False
    elif request.body is not None:
        length = request.headers.get("Content-Length", "")
        if length.isdigit() and request.body.maxbytes and int(length) > request.body.maxbytes:
            # refused before a byte is read: CherryPy would wait for the whole body first
            raise cherrypy.HTTPError(413, f"the request body may be at most {request.body.maxbytes} bytes")
        # Whatever processors are there (CherryPy's, or a tool's such as json_in), refusing malformed bodies.
        request.body.processors = {content_type: _refusing_malformed(process)
                                   for content_type, process in request.body.processors.items()}


def check_query_string() -> None:
    """``hooks.on_start_resource``: a query string that is not UTF-8 is a malformed request (400);
    CherryPy, which looks next, would answer 404."""
    query = cherrypy.serving.request.query_string
    if query:
        try:
            urllib.parse.parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise cherrypy.HTTPError(400, "the query string is not valid UTF-8") from None


def media_type(content_type: str) -> str:
    """A Content-Type's media type alone, in lower case (``"application/json; charset=utf-8"`` -> JSON's)."""
    return content_type.split(";", 1)[0].strip().lower()


def json_request_body() -> Any:
    """The request's JSON body, or NO_BODY when it has none (or is not JSON-typed)."""
    request = cherrypy.serving.request
    content_type = media_type(request.headers.get("Content-Type", ""))
    if request.body is None or content_type != "application/json" or not request.process_request_body:
        return NO_BODY
    try:
        raw = request.body.read()
    except cherrypy.HTTPError as exc:
        if exc.status == 413:
            raise PayloadTooLarge("the request body is too large") from None
        if exc.status == 408:
            raise RequestTimeout("the request body did not arrive in time") from None
        raise BadRequest("the request body could not be read") from None
    return parse_json_body(raw)


def parse_json_body(raw: bytes) -> Any:
    """A request body's JSON value, or NO_BODY for an empty one; names within an object are unique."""
    if not raw.strip():
        return NO_BODY
    try:
        return json.loads(raw, object_pairs_hook=_unique_names, parse_constant=_no_constant)
    except DuplicateName as exc:
        raise BadParameter(exc.name, "given more than once") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the request body is not valid JSON") from None


class DuplicateName(ValueError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose names are unique (RFC 8259 says they SHOULD be; a second one is not a silent pick)."""
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise DuplicateName(name[:64])
        found[name] = value
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class JsonList(list):
    """A list that came as one JSON value, not as a repeated query or form parameter."""


READ_BODY = object()
"""request_params' default: read the current CherryPy request's JSON body (JSON null is a body)."""


def request_params(kwargs: dict[str, Any], max_chars: int, body: Any = READ_BODY) -> dict[str, Any]:
    """Merge query/form parameters (CherryPy's kwargs) with a JSON object body, if any: what a plain
    endpoint (:func:`json_handler`) reads its parameters from, with the limits a poll's have.

    A value longer than ``max_chars``, a name given twice, or a value that is
    not a string, a number or a list of them is a 400 naming it.  ``body`` is
    the parsed JSON body (NO_BODY for none); by default the current CherryPy
    request's is read.
    """
    params = dict(kwargs)
    if body is READ_BODY:
        body = json_request_body()
    if body is not NO_BODY:
        if not isinstance(body, dict):
            raise BadRequest("the JSON body must be an object of parameters")
        for name, value in body.items():
            if name in params:
                raise BadParameter(name, "given more than once")
            params[name] = JsonList(value) if isinstance(value, list) else value
    for name, value in params.items():
        if isinstance(value, list):
            if not all(isinstance(v, (str, int, float)) for v in value):
                raise BadParameter(name, "list items must be strings or numbers")
            if len(value) > 1000:
                raise BadParameter(name, "too many values (at most 1000)")
            size = sum(len(v) for v in value if isinstance(v, str))
        elif isinstance(value, str):
            size = len(value)
        elif value is None or isinstance(value, (int, float)):
            size = 0
        else:
            raise BadParameter(name, "must be a string, a number or a list of them")
        if size > max_chars:
            raise BadParameter(name, f"too long (at most {max_chars} characters)")
    for name in IGNORED:
        params.pop(name, None)
    return params


def single(params: dict[str, Any], name: str) -> Any:
    """The one value of a parameter, taken out of ``params`` (so that what is left is what nobody read), or
    None; a repeated query parameter, or a JSON list, is a 400 naming it."""
    value = params.pop(name, None)
    if isinstance(value, JsonList):
        raise BadParameter(name, "must be a single value, not a list")
    if isinstance(value, list):
        raise BadParameter(name, "given more than once")
    return value


def text(params: dict[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = single(params, name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadParameter(name, f"must be {what}")
    return value


def number(params: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    found = _numeric(params, name, low, high, whole=False)
    return default if found is None else found


def integer(params: dict[str, Any], name: str, low: int, high: int, default: int) -> int:
    """A whole-number parameter (taken out of ``params``) within [low, high], ``default`` when not given; 400
    naming it otherwise, past 64 bits too."""
    found = _numeric(params, name, low, high, whole=True)
    return default if found is None else int(found)


def _numeric(params: dict[str, Any], name: str, low: float, high: float, whole: bool) -> float | None:
    """A number parameter as a person types it (WHOLE or DECIMAL), within [low, high]; None when not given."""
    value = single(params, name)
    if value is None:
        return None
    if isinstance(value, bool) or (whole and isinstance(value, float)) or not isinstance(value, (int, float)) \
            and not (WHOLE if whole else DECIMAL).fullmatch(str(value)):
        raise _out_of_range(name, low, high, whole)
    result = int(value) if whole else float(value)
    if not math.isfinite(result) or not low <= result <= high:
        raise _out_of_range(name, low, high, whole)
    return result


def _out_of_range(name: str, low: float, high: float, whole: bool) -> BadParameter:
    return BadParameter(name, f"must be a whole number from {low} to {high}" if whole
                        else f"must be a number from {low:g} to {high:g}")


def poll_params(params: dict[str, Any], limits: PollLimits) -> PollParams:
    """Take the protocol's own parameters out of params, leaving the handler's."""
    key = text(params, "key", KEY, "a session key from an earlier response")
    cursor = text(params, "cursor", CURSOR, "the cursor from the last response")
    # A default above its bound (PollLimits(max_timeout=5), or a path's longpoll.max_timeout under the
    # decorator's default) is the bound: a poll is never held longer, or given more, than any poll may ask.
    timeout = number(params, "timeout", 0, limits.max_timeout, min(limits.default_timeout, limits.max_timeout))
    max_items = integer(params, "max", 1, limits.max_max, min(limits.default_max, limits.max_max))
    if key is not None and cursor is None:
        raise BadParameter("cursor", "required with key: send the cursor of the last response")
    return PollParams(key, cursor if key is not None else None, timeout, max_items)


def identifier(params: dict[str, Any]) -> str:
    """The ``identifier`` parameter a client names itself with (taken out of ``params``): 401 when missing
    (the seeds' rule), 400 unless 1-64 characters of ``A-Z a-z 0-9 _ . -``."""
    value = single(params, "identifier")
    if value is None or value == "":
        raise Unauthorized("identifier is required: 1-64 characters of A-Z a-z 0-9 _ . -")
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise BadParameter("identifier", "must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return value
