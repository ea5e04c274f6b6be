"""Every answer longpoll makes, built in one place: batches, errors, and the JSON error page for what
CherryPy answers itself.

The fronts (CherryPy's handlers, ``FastPolls``, ``longpoll.asgi``) send what
:func:`batch` and :func:`error` build, so a poll answers the same bytes
whichever front took it.  An app that wants every error in the JSON shape of
the protocol (404, 405, 411, 413 and unexpected 500s included, and a
LongPollError raised by any of its handlers) mounts with :data:`JSON_ERRORS`
in its config; ``json_yield`` handlers answer their own errors in that shape
anyway.  Without it, a LongPollError still answers its own status and
headers, with the app's error page (``LongPollError.set_response``).
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Generator
from http import HTTPStatus
from typing import Any

import cherrypy
import orjson

from .errors import LongPollError
from .params import check_query_string, prepare_body
from .session import Batch

log = logging.getLogger("longpoll")

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}

Answer = tuple[int, dict[str, str], bytes | Generator[Any, Any, None]]
"""Status, headers and body: bytes, or a stream's steps (``waits.py``), which the front runs."""


def batch(key: str, taken: Batch) -> Answer:
    """A poll's answer: its JSON made from the items' own bytes, each encoded once."""
    head = b'{"state":"%s","key":"%s","cursor":%s,"items":[' % (
        taken.state.encode(), key.encode(), orjson.dumps(taken.cursor))
    tail = b"]"
    if taken.dropped:
        tail += b',"dropped":%d' % taken.dropped
    if taken.gap:
        tail += b',"gap":true'
    if taken.retry_ms is not None:
        tail += b',"retry_ms":%d' % taken.retry_ms
    return 200, JSON_HEADERS, head + b",".join(taken.parts) + tail + b"}"


def error(exc: LongPollError) -> Answer:
    """An error's answer (its status, its headers such as Retry-After, the protocol's JSON shape)."""
    return exc.status, {**JSON_HEADERS, **exc.headers()}, orjson.dumps(exc.body())


def internal(where: str) -> Answer:
    """What a bug answers: a 500 in the protocol's shape, the traceback in the log (never to the client)."""
    log.exception("unexpected error in long-poll endpoint %s", where)
    return error(LongPollError("internal error; the server log has the details"))


def json_body(status: int, body: Any, headers: dict[str, str] | None = None) -> bytes:
    """Set status and JSON headers (no caching) on the current response; return the body bytes: what a
    :func:`json_handler` returns."""
    response = cherrypy.serving.response
    response.status = status
    response.headers["Content-Type"] = "application/json"
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return orjson.dumps(body)


def error_body(exc: LongPollError) -> bytes:
    return json_body(exc.status, exc.body(), exc.headers())


@functools.lru_cache(maxsize=64)
def status_line(status: int) -> str:
    """``"404 Not Found"``: the status line of a status, for the fronts that write their own."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


CODES = {413: "too_large", 408: "request_timeout"}
"""Where CherryPy's answers and longpoll's own errors (errors.py) would name one status two ways."""


def _code(status: int) -> str:
    if status in CODES:
        return CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def json_error_page(status: str = "500", message: str = "", traceback: str = "", version: str = "") -> bytes:
    """CherryPy ``error_page.default``: the protocol's error shape, never a traceback."""
    code = int(str(status).split()[0])
    response = cherrypy.serving.response
    response.headers["Content-Type"] = "application/json"
    response.headers["Cache-Control"] = "no-store"
    text = html.unescape(message or "")  # CherryPy hands the message over HTML-escaped
    if code >= 500:
        text = "internal error; the server log has the details"
    return orjson.dumps({"error": _code(code), "message": text})


json_error_page.answers_json = True  # type: ignore[attr-defined]  # LongPollError.set_response answers in JSON


def unpad() -> None:
    """``hooks.before_finalize``: undo CherryPy's padding of short error bodies (an old IE workaround) on JSON."""
    response = cherrypy.serving.response
    if response.status and int(str(response.status)[:3]) >= 400 and \
            response.headers.get("Content-Type") == "application/json":
        body = response.collapse_body().rstrip(b" ")
        response.body = body
        response.headers["Content-Length"] = str(len(body))


def answer_longpoll_errors() -> None:
    """``hooks.before_handler``: a LongPollError raised by any handler (``broker.publish`` with Redis away,
    a ``BadParameter`` of your own) answers as its JSON error says (503 with ``retry_ms``, 400 naming the
    parameter), as the handler's own answer.  Runs last, so it wraps what other tools wrapped (json_out); one
    raised elsewhere in the request (a tool's) is answered alike by ``LongPollError.set_response``."""
    request = cherrypy.serving.request
    inner = request.handler
    if inner is None:
        return

    def handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return inner(*args, **kwargs)
        except LongPollError as exc:
            return error_body(exc)

    request.handler = handler


answer_longpoll_errors.priority = 90  # type: ignore[attr-defined]

JSON_ERRORS: dict[str, Any] = {
    "error_page.default": json_error_page,
    "request.show_tracebacks": False,
    "hooks.before_finalize": unpad,
    "hooks.before_request_body": prepare_body,
    "hooks.on_start_resource": check_query_string,
    "hooks.before_handler": answer_longpoll_errors,
}
"""Per-app config that makes CherryPy's own error answers JSON (and reads
request bodies without CherryPy's 411 for body-less POSTs or its 500 for
malformed multipart).  From a config file, use the tool instead:
``tools.longpoll_json_errors.on = True``."""


def _json_errors() -> None:
    """The tool behind ``tools.longpoll_json_errors``: JSON_ERRORS for the request, set at its start."""
    request = cherrypy.serving.request
    request.error_page["default"] = json_error_page
    request.show_tracebacks = False
    request.hooks.attach("before_finalize", unpad)
    request.hooks.attach("before_request_body", prepare_body)
    request.hooks.attach("before_handler", answer_longpoll_errors, priority=90)
    check_query_string()


cherrypy.tools.longpoll_json_errors = cherrypy.Tool("on_start_resource", _json_errors, priority=10)
