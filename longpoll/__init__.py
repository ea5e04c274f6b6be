"""longpoll: real-time updates over plain HTTP long-polling, for CherryPy.

The data path, one module each: a backend log (``backends/``) is read by one
``hub`` per process, which fills each session's ``subscription``; a
``session`` cuts its generator into batches; the ``registry`` holds sessions
by key and the ``reaper`` expires them; ``endpoint.json_yield`` is the HTTP
face of it all.
"""

__version__ = "0.1.0"

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
                     NotFound,
                     TooManySessions,
                     Unauthorized,
)
from .params import PollLimits
from .registry import Registry
from .responses import JSON_ERRORS, json_error_page
from .signals import Signal
from .subscription import Subscription

__all__ = [
    "Broker", "json_yield", "PollLimits", "Registry", "Signal", "Subscription", "JSON_ERRORS",
    "json_error_page", "LongPollError", "BadRequest", "BadParameter", "Unauthorized", "Forbidden",
    "NotFound", "Conflict", "Expired", "TooManySessions", "BackendUnavailable", "GeneratorFailed",
]
