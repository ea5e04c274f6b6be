"""The ``longpoll`` config namespace: settings from an app's config file, per app and per path.

CherryPy libraries take their settings from config sections like this one::

    [global]
    longpoll.max_held_polls = 2000          # process-wide
    longpoll.max_stream_bytes = 16777216    # process-wide: what all streams may hold unsent

    [/api/chat]
    longpoll.idle_timeout = 30              # per app or path: any key below
    longpoll.max_timeout = 45
    longpoll.trusted_proxies = ["10.0.0.0/8"]

A ``json_yield`` decorator's arguments are the defaults; config overrides
them where it is given.  Per-poll limits are read on every request;
registry settings (idle timeout, session caps) when the endpoint's registry
is made, at its first request.

Every value is checked once, with the rules of ``config_rules.py``, before
anything is served: a bad one stops the start (the engine's, or an ASGI
lifespan's) with a message naming the key, where it stands and why,
wherever it stands (the global config, each app's sections, the
``_cp_config`` of what is mounted); the decorator's arguments are checked
when it decorates.  What reads the config per request checks each value
again, for an app mounted after the engine started.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from typing import Any

import cherrypy
from cherrypy import _cprequest

from . import config_rules
from .budget import BUDGET, MAX_STREAM_BYTES
from .config_rules import SettingError
from .params import PollLimits
from .registry import SessionLimits

POLL_KEYS = {"default_timeout": "default_timeout", "max_timeout": "max_timeout", "default_max": "default_max",
             "max_items": "max_max", "max_param_chars": "max_param_chars", "heartbeat": "heartbeat",
             "max_stream_seconds": "max_stream_seconds", "max_batch_bytes": "max_batch_bytes"}
"""Read per request into PollLimits: config key -> PollLimits field."""

REGISTRY_KEYS = {"idle_timeout": "idle_timeout", "max_sessions": "max_sessions",
                 "max_sessions_per_identifier": "max_per_owner", "max_sessions_per_address": "max_per_address",
                 "polls_per_second": "polls_per_second", "poll_burst": "poll_burst",
                 "unconfirmed_idle_timeout": "unconfirmed_idle_timeout"}
"""Read when an endpoint's own registry is made: config key -> json_yield argument or SessionLimits field."""

KNOWN = config_rules.KNOWN

START_PRIORITY = 5
"""The check runs before anything else the engine starts (the longpoll plugin at 60, CherryPy's server at 75)."""


def _global(key: str, value: Any) -> None:
    config_rules.check({key: value}, "in [global]", pairs=False)
    if key == "max_stream_bytes":  # the process's stream budget is the process's, not a request's
        BUDGET.max_bytes = MAX_STREAM_BYTES if value is None else int(value)


def _per_request(key: str, value: Any) -> None:
    """Nothing to do per request: endpoints read ``request.config`` themselves."""


def register() -> None:
    cherrypy.config.namespaces["longpoll"] = _global
    _cprequest.Request.namespaces["longpoll"] = _per_request
    # Not CherryPy's Checker: it only warns, and it is off in the production environment.
    cherrypy.engine.subscribe("start", check_tree, priority=START_PRIORITY)


def check_tree() -> None:
    """Check every ``longpoll.*`` setting of the global config and of each app in ``cherrypy.tree`` (its
    sections, and the ``_cp_config`` of the objects and handlers mounted); raise one SettingError naming
    each that breaks its rule, and warn (SettingWarning) of those a proxy would defeat.

    It runs at engine start, so a bad value stops the start: CherryPy then logs the error and the process
    exits.  ``longpoll.asgi`` calls it before its lifespan starts the engine, so that the ASGI server reports
    the startup failed, with the message, rather than the process ending under it.
    """
    found = []
    for where, config, process_wide in _places():
        settings = {key[len("longpoll."):]: value for key, value in config.items()
                    if isinstance(key, str) and key.startswith("longpoll.")}
        if settings:
            found += config_rules.problems(settings, where, process_wide=process_wide)
    if found:
        raise SettingError(found)


def _places() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(where, config, process-wide?) of every place a setting can stand."""
    yield "in [global]", dict(cherrypy.config), True
    for script_name, app in list(cherrypy.tree.apps.items()):
        mount = script_name or "/"
        for section, config in getattr(app, "config", {}).items():
            if isinstance(config, dict):
                # An app config's [global] is the process's too when it is given to cherrypy.config as well
                # (cherrypy.quickstart does): process-wide settings are not out of place there.
                yield f"in [{section}] of the app mounted at {mount}", config, section == "global"
        yield from _mounted(getattr(app, "root", None), mount)


def _mounted(root: Any, mount: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """The ``_cp_config`` of every object reachable from an app's root as CherryPy's dispatch reaches them,
    through attributes.  Read with ``getattr_static``, and past any object that will not be read: what an app
    hangs on its tree (a database handle, a proxy object) must not run code, or fail the start, here."""
    seen: set[int] = set()
    stack = [(root, "", 0)]  # paths within the app
    while stack:
        node, path, depth = stack.pop()
        if node is None or id(node) in seen or depth > 8 or isinstance(node, (str, bytes, int, float, type)):
            continue
        seen.add(id(node))
        try:
            own = inspect.getattr_static(node, "_cp_config", None)
            names = {*vars(node), *dir(type(node))} if hasattr(node, "__dict__") else set(dir(type(node)))
            children = [(name, inspect.getattr_static(node, name, None)) for name in names
                        if isinstance(name, str) and not name.startswith("_")]
        except Exception:  # an object that cannot be looked at is no handler
            continue
        if isinstance(own, dict):
            yield f"in the _cp_config of {path or '/'} in the app mounted at {mount}", own, False
        stack.extend((child, f"{path}/{name}", depth + 1) for name, child in children)


def check_arguments(func: Callable[..., Any], *, idle_timeout: Any, max_sessions: Any, poll_limits: Any,
                    session_limits: Any, max_body_bytes: Any) -> None:
    """``json_yield``'s arguments, checked when it decorates ``func`` with the rules of the config keys they
    stand for: a ValueError (SettingError) naming the argument, before anything is served."""
    if not isinstance(poll_limits, PollLimits):
        raise TypeError(f"json_yield(poll_limits=...) takes a longpoll.PollLimits, not {type(poll_limits).__name__}")
    if session_limits is not None and not isinstance(session_limits, SessionLimits):
        raise TypeError("json_yield(session_limits=...) takes a longpoll.SessionLimits, "
                        f"not {type(session_limits).__name__}")
    settings: dict[str, Any] = {"idle_timeout": idle_timeout}
    labels = {"idle_timeout": "idle_timeout"}
    if session_limits is None:
        settings["max_sessions"], labels["max_sessions"] = max_sessions, "max_sessions"
    for given, defaults, keys, name in ((poll_limits, PollLimits(), POLL_KEYS, "poll_limits"),
                                        (session_limits, SessionLimits(), REGISTRY_KEYS, "session_limits")):
        if given is None:
            continue
        for key, field in keys.items():
            if field in {f.name for f in fields(given)} and getattr(given, field) != getattr(defaults, field):
                settings[key], labels[key] = getattr(given, field), f"{name}.{field}"  # only what was given
    where = f"of json_yield for {getattr(func, '__qualname__', func)!r}"
    found = config_rules.problems(settings, where, label=labels.__getitem__)
    body = config_rules.COUNT.problem(max_body_bytes)
    if body is not None:
        found.append(f"max_body_bytes {where}: {body}")
    if found:
        raise SettingError(found)


AT_REQUEST = "in the config of the path polled"


@functools.lru_cache(maxsize=64)
def _poll_limits(base: PollLimits, overrides: tuple[tuple[str, Any], ...]) -> PollLimits:
    config_rules.check(dict(overrides), AT_REQUEST, pairs=False, warn=False)
    return replace(base, **{POLL_KEYS[key]: config_rules.value(key, value) for key, value in overrides})


def poll_limits(config: dict[str, Any], base: PollLimits) -> PollLimits:
    """``base`` with the request's config applied (cached: the same config gives the same object)."""
    overrides = tuple((key, config["longpoll." + key]) for key in POLL_KEYS
                      if config.get("longpoll." + key) is not None)
    return _poll_limits(base, overrides) if overrides else base


def registry_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The registry keys the config gives, checked, as ``Registry.configure`` takes them."""
    found = {key: config["longpoll." + key] for key in REGISTRY_KEYS if config.get("longpoll." + key) is not None}
    config_rules.check(found, AT_REQUEST, pairs=False, warn=False)
    return {key: config_rules.value(key, value) for key, value in found.items()}


register()  # on import: whatever uses json_yield has its config keys known
