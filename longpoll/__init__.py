"""longpoll: real-time updates over plain HTTP long-polling, for CherryPy.

The data path, one module each: a backend log (``backends/``) is read by one
``hub`` per process, which fills each session's ``subscription``; a
``session`` cuts its generator into batches; the ``registry`` holds sessions
by key; ``endpoint.json_yield`` is the HTTP face of it all, and ``plugin``
runs it with CherryPy's engine (expiry, hubs, sizing).
"""

__version__ = "0.1.0"

from . import config as _config
from .broker import Broker
from .endpoint import json_yield
from .errors import (
    BackendUnavailable,
    BadParameter,
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    GeneratorFailed,
    LongPollError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    TooManySessions,
    Unauthorized,
)
from .params import PollLimits
from .plugin import Plugin
from .registry import Registry, SessionLimits
from .responses import JSON_ERRORS, json_error_page
from .signals import Signal
from .sizing import tune_cheroot
from .subscription import Subscription
from .webclient import web_dir

_config.register()

__all__ = [
    "Broker", "json_yield", "Plugin", "PollLimits", "SessionLimits", "Registry", "Signal", "Subscription",
    "JSON_ERRORS", "json_error_page", "tune_cheroot", "web_dir",
    "LongPollError", "BadRequest", "BadParameter", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed",
    "Conflict", "Expired", "PayloadTooLarge", "TooManySessions", "TooManyRequests", "BackendUnavailable",
    "GeneratorFailed",
]
