"""The ``longpoll`` config namespace: settings from an app's config file, per app and per path.

CherryPy libraries take their settings from config sections like this one::

    [global]
    longpoll.max_held_polls = 2000          # process-wide

    [/api/chat]
    longpoll.idle_timeout = 30              # per app or path: any key below
    longpoll.max_timeout = 45
    longpoll.trusted_proxies = ["10.0.0.0/8"]

A ``json_yield`` decorator's arguments are the defaults; config overrides
them where it is given.  Per-poll limits are read on every request;
registry settings (idle timeout, session caps) when the endpoint's registry
is made, at its first request.  Registering the namespace also keeps
CherryPy's config checker from warning about these keys.
"""

from __future__ import annotations

import difflib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import cherrypy
from cherrypy import _cprequest

from . import keys
from .clients import networks
from .params import PollLimits

POLL_KEYS = {"default_timeout": float, "max_timeout": float, "default_max": int, "max_items": int,
             "max_param_chars": int, "heartbeat": float, "max_stream_seconds": float, "max_batch_bytes": int}
"""Read per request into PollLimits (``max_items`` is PollLimits.max_max)."""

REGISTRY_KEYS = {"idle_timeout": float, "max_sessions": int, "max_sessions_per_identifier": int,
                 "max_sessions_per_address": int, "polls_per_second": float, "poll_burst": float,
                 "unconfirmed_idle_timeout": float}
"""Read when an endpoint's own registry is made."""

OTHER_KEYS = {"max_held_polls", "trusted_proxies", "route"}

KNOWN = set(POLL_KEYS) | set(REGISTRY_KEYS) | OTHER_KEYS


def _check(key: str, value: Any) -> None:
    if key not in KNOWN:
        raise ValueError(f"longpoll.{key} is not a longpoll setting; known: {', '.join(sorted(KNOWN))}")
    kind = POLL_KEYS.get(key) or REGISTRY_KEYS.get(key)
    if kind is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ValueError(f"longpoll.{key} must be a positive number, not {value!r}")
    if key == "max_held_polls" and value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"longpoll.max_held_polls must be a whole number of at least 1, not {value!r}")
    if key == "route" and value is not None:
        keys.check_route(value)
    if key == "trusted_proxies":
        networks((value,) if isinstance(value, str) else tuple(value or ()))


def _global(key: str, value: Any) -> None:
    _check(key, value)


def _per_request(key: str, value: Any) -> None:
    """Nothing to do per request: endpoints read ``request.config`` themselves."""


def register() -> None:
    cherrypy.config.namespaces["longpoll"] = _global
    _cprequest.Request.namespaces["longpoll"] = _per_request
    cherrypy.checker.check_longpoll_keys = check_keys  # Checker calls every check_* it has, at engine start


def check_keys() -> None:
    """Warn (CherryPy's Checker does, at engine start) of every ``longpoll.*`` key that is not a setting, or
    whose value is wrong, wherever it stands: the global config, each app's sections, and the ``_cp_config``
    of the objects and handlers mounted in the tree."""
    for where, config in _configs():
        for key, value in config.items():
            if not isinstance(key, str) or not key.startswith("longpoll."):
                continue
            try:
                _check(key[len("longpoll."):], value)
            except ValueError as exc:
                close = difflib.get_close_matches(key[len("longpoll."):], sorted(KNOWN), n=1)
                hint = f" (did you mean longpoll.{close[0]}?)" if close and close[0] != key[9:] else ""
                warnings.warn(f"{where}: {exc}{hint}", stacklevel=1)


def _configs() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "the global config", dict(cherrypy.config)
    for script_name, app in cherrypy.tree.apps.items():
        mount = script_name or "/"
        for section, config in getattr(app, "config", {}).items():
            if isinstance(config, dict):
                yield f"[{section}] of the app mounted at {mount}", config
        seen: set[int] = set()
        stack = [(getattr(app, "root", None), mount.rstrip("/"), 0)]
        while stack:
            node, path, depth = stack.pop()
            if node is None or id(node) in seen or depth > 8:
                continue
            seen.add(id(node))
            own = getattr(node, "_cp_config", None)
            if isinstance(own, dict):
                yield f"_cp_config of {path or '/'} in the app mounted at {mount}", own
            for name, child in list(getattr(node, "__dict__", {}).items()) + [
                    (n, getattr(type(node), n, None)) for n in dir(type(node)) if not n.startswith("__")]:
                if not name.startswith("_") and child is not None and not isinstance(child, (str, bytes, int, float)):
                    stack.append((child, f"{path}/{name}", depth + 1))


@functools.lru_cache(maxsize=64)
def _poll_limits(base: PollLimits, overrides: tuple[tuple[str, Any], ...]) -> PollLimits:
    changes = {}
    for key, value in overrides:
        _check(key, value)
        changes["max_max" if key == "max_items" else key] = POLL_KEYS[key](value)
    return replace(base, **changes)


def poll_limits(config: dict[str, Any], base: PollLimits) -> PollLimits:
    """``base`` with the request's config applied (cached: the same config gives the same object)."""
    overrides = tuple((key, config["longpoll." + key]) for key in POLL_KEYS if "longpoll." + key in config)
    return _poll_limits(base, overrides) if overrides else base


def registry_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The registry keys the config gives, checked."""
    found = {}
    for key, kind in REGISTRY_KEYS.items():
        value = config.get("longpoll." + key)
        if value is not None:
            _check(key, value)
            found[key] = kind(value)
    return found


register()  # on import: whatever uses json_yield has its config keys known
