"""longpoll's log lines where a CherryPy app has its own: ``cherrypy.log``.

An app configures ``log.error_file``, ``log.access_file`` and ``log.screen``;
longpoll's warnings and a generator's traceback belong in that error log, and
the polls the fast path answers in that access log, in CherryPy's format.
Without this, tracebacks went to the stdlib ``longpoll`` logger and, with
nothing configured for it, to stderr through Python's last-resort handler,
and the fast path's polls were missing from the access log.

An app that configures the ``longpoll`` logger itself (a handler of its own)
keeps that: :func:`to_cherrypy` leaves such a logger alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cherrypy

LOGGER = "longpoll"
CONTEXT = "LONGPOLL"


class CherryPyErrors(logging.Handler):
    """Each record into ``cherrypy.log.error`` (context LONGPOLL), its traceback included."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            cherrypy.log.error(message, context=CONTEXT, severity=record.levelno)
        except Exception:
            self.handleError(record)


def to_cherrypy() -> None:
    """Send the ``longpoll`` logger to CherryPy's error log, unless the app gave it a handler of its own."""
    logger = logging.getLogger(LOGGER)
    if logger.handlers:
        return
    logger.addHandler(CherryPyErrors())
    logger.propagate = False  # CherryPy's log has it; the root's handlers would write it twice
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def access(environ: dict[str, Any], status: int, length: int | None) -> None:
    """One line in CherryPy's access log, in its format, for a request answered without CherryPy."""
    manager = cherrypy.log
    if not manager.access_log.handlers and not manager.access_log.propagate:
        return
    query = environ.get("QUERY_STRING", "")
    line = f"{environ.get('REQUEST_METHOD', '-')} {environ.get('PATH_INFO', '')}{'?' + query if query else ''} " \
           f"{environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}"
    atoms = {"h": environ.get("REMOTE_ADDR", "-"), "l": "-", "u": "-", "t": manager.time(), "r": line,
             "s": str(status), "b": str(length) if length is not None else "-",
             "f": environ.get("HTTP_REFERER", ""), "a": environ.get("HTTP_USER_AGENT", ""),
             "o": environ.get("HTTP_HOST", "-"), "i": "-", "z": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    escaped = {k: repr(v.replace('"', '\\"').encode("utf8"))[2:-1].replace("\\\\", "\\") for k, v in atoms.items()}
    try:
        manager.access_log.log(logging.INFO, manager.access_log_format.format(**escaped))
    except Exception:
        manager(traceback=True)
