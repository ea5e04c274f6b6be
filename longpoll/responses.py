"""JSON responses, and the JSON error page for everything CherryPy answers itself.

An app that wants every error in the JSON shape of PROTOCOL.md (404, 405,
411, 413 and unexpected 500s included, and a LongPollError raised by any of
its handlers) mounts with :data:`JSON_ERRORS` in its config; ``json_yield``
handlers answer their own errors in that shape anyway.  Without it, a
LongPollError still answers its own status and headers, with the app's error
page (:func:`answer_error`).
"""

from __future__ import annotations

import functools
import html
from http import HTTPStatus
from typing import Any

import cherrypy
import orjson
from cherrypy import _cperror

from .errors import LongPollError
from .params import check_query_string, prepare_body


def json_body(status: int, body: Any, headers: dict[str, str] | None = None) -> bytes:
    """Set status and JSON headers on the current response; return the body bytes."""
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


def unpad() -> None:
    """``hooks.before_finalize``: undo CherryPy's padding of short error bodies (an old IE workaround) on JSON."""
    response = cherrypy.serving.response
    if response.status and int(str(response.status)[:3]) >= 400 and \
            response.headers.get("Content-Type") == "application/json":
        body = response.collapse_body().rstrip(b" ")
        response.body = body
        response.headers["Content-Length"] = str(len(body))


def answer_error(exc: LongPollError) -> None:
    """``set_response`` of every LongPollError: what CherryPy answers for one raised in a handler or a tool.

    Its status and its headers (``Retry-After``, ``Allow``) always, so a client that retries a 503 after
    ``Retry-After`` does so whether or not the app configured anything.  The body is the error's own JSON
    where the app's error page for that status is :func:`json_error_page` (``JSON_ERRORS``), and otherwise
    the app's error page (``error_page.<status>`` or ``error_page.default``, CherryPy's template without
    either) with the error's message: never a traceback, whatever ``request.show_tracebacks`` says, since
    the error is an answer, not a failure.
    """
    request = cherrypy.serving.request
    response = cherrypy.serving.response
    _cperror.clean_headers(exc.status)  # those of the content the handler was making (an earlier Retry-After too)
    response.headers.pop("Content-Length", None)
    page = request.error_page.get(exc.status) or request.error_page.get("default")
    if page is json_error_page:
        response.body = error_body(exc)
    else:
        response.status = exc.status
        response.body = _cperror.get_error_page(exc.status, message=exc.message, traceback=None)
        response.headers["Cache-Control"] = "no-store"
        response.headers.update(exc.headers())


def answer_longpoll_errors() -> None:
    """``hooks.before_handler``: a LongPollError raised by any handler (``broker.publish`` with Redis away,
    a ``BadParameter`` of your own) answers as its JSON error says (503 with ``retry_ms``, 400 naming the
    parameter), as the handler's own answer.  Runs last, so it wraps what other tools wrapped (json_out); one
    raised elsewhere in the request (a tool's) is answered alike by :func:`answer_error`."""
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
