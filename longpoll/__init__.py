"""longpoll: real-time updates over plain HTTP long-polling, for CherryPy.

The data path, one module each: a backend log (``backends/``) is read by one
``hub`` per process, which fills each session's ``subscription``; a
``session`` cuts its generator into batches; the ``registry`` holds sessions
by key; ``endpoint.json_yield`` is the HTTP face of it all, and ``plugin``
runs it with CherryPy's engine (expiry, hubs, sizing).

The names below are imported on first use (PEP 562), so that a tool that
imports one module (the CLI, a test helper) does not pay for the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Broker", "json_yield", "asgi", "Plugin", "PollLimits", "SessionLimits", "Registry", "Signal", "Subscription",
    "JSON_ERRORS", "json_error_page", "tune_cheroot", "web_dir", "web_config", "FastPolls", "GAP",
    "LongPollError", "BadRequest", "BadParameter", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed",
    "Conflict", "Expired", "PayloadTooLarge", "RequestTimeout", "TooManySessions", "TooManyRequests",
    "BackendUnavailable", "GeneratorFailed", "SettingError", "SettingWarning",
    "json_handler", "json_body", "request_params", "single", "integer", "identifier",
    "Source", "open_source", "order", "Worker", "attach", "track", "unavailable_as_503", "queued", "ChannelListener",
    "Routes", "Continuation", "Call", "Steps", "Batch", "THREADS", "Answer", "JSON_HEADERS",
]

_MODULES = {
    "Broker": "broker", "json_yield": "endpoint", "asgi": "asgi_front", "Plugin": "plugin", "PollLimits": "params",
    "SessionLimits": "registry", "Registry": "registry", "Signal": "signals", "Subscription": "subscription",
    "JSON_ERRORS": "responses", "json_error_page": "responses", "tune_cheroot": "sizing",
    "web_dir": "webclient", "web_config": "webclient",
    "FastPolls": "fastpath", "GAP": "signals", "SettingError": "config_rules", "SettingWarning": "config_rules",
    "json_handler": "endpoint", "json_body": "responses", "request_params": "params", "single": "params",
    "integer": "params", "identifier": "params", "Source": "feed", "open_source": "feed", "order": "backends.base",
    "Worker": "background", "attach": "plugin", "track": "stats", "unavailable_as_503": "backends.connection",
    "queued": "backends.connection",
    "ChannelListener": "backends.channel", "Routes": "routes", "Continuation": "routes", "Call": "waits",
    "Steps": "waits",
    "Batch": "waits", "THREADS": "waits", "Answer": "responses", "JSON_HEADERS": "responses",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name, "errors" if name in __all__ else None)
    if module is None:
        raise AttributeError(f"module 'longpoll' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from .asgi_front import asgi
    from .backends.base import order
    from .backends.channel import ChannelListener
    from .backends.connection import queued, unavailable_as_503
    from .background import Worker
    from .broker import Broker
    from .config_rules import SettingError, SettingWarning
    from .endpoint import json_handler, json_yield
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
        RequestTimeout,
        TooManyRequests,
        TooManySessions,
        Unauthorized,
    )
    from .fastpath import FastPolls
    from .feed import Source, open_source
    from .params import PollLimits, identifier, integer, request_params, single
    from .plugin import Plugin, attach
    from .registry import Registry, SessionLimits
    from .responses import JSON_ERRORS, JSON_HEADERS, Answer, json_body, json_error_page
    from .routes import Continuation, Routes
    from .signals import GAP, Signal
    from .sizing import tune_cheroot
    from .stats import track
    from .subscription import Subscription
    from .waits import THREADS, Batch, Call, Steps
    from .webclient import web_config, web_dir
