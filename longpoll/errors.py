"""The typed exceptions longpoll raises, each carrying its HTTP answer.

Code anywhere on the data path raises one of these; only the HTTP layer turns
it into a response.  That keeps status codes and the JSON error shape of
docs/protocol.md in one place, and lets library users catch ``LongPollError``.

Each is also a ``cherrypy.HTTPError``, so that raised where longpoll does not
answer it itself (``broker.publish()`` in an app's plain handler, a tool that
refuses a request) CherryPy still answers its status and headers rather than
an unexpected 500: see :meth:`LongPollError.set_response`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import cherrypy
import orjson
from cherrypy import _cperror


class LongPollError(cherrypy.HTTPError):
    """Base class: an error with an HTTP status and a stable error code.

    ``status`` is the HTTP status, ``code`` the error's name in the JSON body
    (a ``cherrypy.HTTPError`` calls its status number ``code``; here that
    name keeps the meaning it has always had in longpoll).
    """

    status = 500
    code = "internal"

    def __init__(self, message: str, *, retry_after: float | None = None, **extra: Any):
        # Not HTTPError.__init__: it would make ``code`` the status number, and ``args`` (status, message).
        Exception.__init__(self, message)
        self.message = message
        self.retry_after = retry_after
        self.extra = extra
        self._message = message  # what CherryPy's own HTTPError methods read
        self.reason = _phrase(self.status)

    def set_response(self) -> None:
        """Answer as this error says, wherever in a CherryPy request it was raised (CherryPy calls this for
        every HTTPError, in a handler or a tool).

        Its status and its headers (``Retry-After``, ``Allow``) always, so a client that retries a 503 after
        ``Retry-After`` does so whether or not the app configured anything.  The body is the error's own JSON
        where the app's error page for that status answers in JSON (``responses.json_error_page``, which
        ``JSON_ERRORS`` sets), and otherwise the app's error page (``error_page.<status>`` or
        ``error_page.default``, CherryPy's template without either) with the error's message: never a
        traceback, whatever ``request.show_tracebacks`` says, since the error is an answer, not a failure.
        """
        request = cherrypy.serving.request
        response = cherrypy.serving.response
        _cperror.clean_headers(self.status)  # those of the content the handler was making (an earlier Retry-After)
        response.headers.pop("Content-Length", None)
        response.status = self.status
        response.headers["Cache-Control"] = "no-store"
        response.headers.update(self.headers())
        page = request.error_page.get(self.status) or request.error_page.get("default")
        if getattr(page, "answers_json", False):
            response.headers["Content-Type"] = "application/json"
            response.body = orjson.dumps(self.body())
        else:
            response.body = _cperror.get_error_page(self.status, message=self.message, traceback=None)

    def body(self) -> dict[str, Any]:
        """The JSON error object of docs/protocol.md, plus any extra fields (``retry_ms`` whenever Retry-After is
        set: clients that cannot read headers, EventSource's among them, read it there)."""
        body = {"error": self.code, "message": self.message, **self.extra}
        if self.retry_after is not None and "retry_ms" not in body:
            body["retry_ms"] = max(1, round(self.retry_after * 1000))
        return body

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status of an app's own subclass that Python does not name
        return ""


class BadRequest(LongPollError):
    status = 400
    code = "bad_request"


class BadParameter(BadRequest):
    """A parameter is malformed or out of range; the body names it."""

    code = "bad_parameter"

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}", param=param)
        self.param = param


class Unauthorized(LongPollError):
    status = 401
    code = "unauthorized"


class Forbidden(LongPollError):
    status = 403
    code = "forbidden"


class NotFound(LongPollError):
    status = 404
    code = "not_found"


class MethodNotAllowed(LongPollError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: tuple[str, ...]):
        super().__init__(f"{method} is not allowed here; use {', '.join(allowed)}")
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class Conflict(LongPollError):
    status = 409
    code = "conflict"


class Expired(LongPollError):
    """The session key is unknown or its session has ended; start a new one."""

    status = 410
    code = "expired"

    def __init__(self, message: str = "unknown or expired session key; start a new session"):
        super().__init__(message, state="expired")


class RequestTimeout(LongPollError):
    """The request body did not arrive in time (shorter than its Content-Length, or stalled)."""

    status = 408
    code = "request_timeout"


class PayloadTooLarge(LongPollError):
    status = 413
    code = "too_large"


class TooManySessions(LongPollError):
    status = 429
    code = "too_many_sessions"


class TooManyRequests(LongPollError):
    """A client polls faster than the server allows; Retry-After says when to come back."""

    status = 429
    code = "too_many_requests"


class BackendUnavailable(LongPollError):
    """The shared backend (Redis) cannot be reached right now."""

    status = 503
    code = "backend_unavailable"

    def __init__(self, message: str = "the backend is unreachable; retry later", retry_after: float = 2):
        super().__init__(message, retry_after=retry_after)


class Stopping(LongPollError):
    """The server process is stopping or reloading: the client resumes its session in a moment, here or on
    another process."""

    status = 503
    code = "stopping"

    def __init__(self, message: str = "the server is stopping; resume the session in a moment",
                 retry_after: float = 1):
        super().__init__(message, retry_after=retry_after)


class GeneratorFailed(LongPollError):
    """A session's generator raised; the session is over, other sessions are not."""

    status = 500
    code = "generator_failed"
