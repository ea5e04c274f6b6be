"""What each ``longpoll.*`` setting may be, and the one check of a place's settings against those rules.

A setting can stand in several places: the global config, an app's sections
(per app and per path), the ``_cp_config`` of what is mounted, and the
arguments of ``json_yield``.  Every place is checked by :func:`problems`
with the same rules, so a value is refused alike wherever it stands, in
words that name the key, the place and the reason; ``config.py`` says when
(at engine start, before an ASGI lifespan starts the engine, at decoration).

The bounds are the protocol's where it has them (a poll is held 0-60 s and
takes 1-1000 items, docs/protocol.md) and otherwise what the code needs to work
at all (a session cap of at least one, a burst of at least one poll).  A
value that works but that a proxy in front would defeat is a warning
(:class:`SettingWarning`), not an error: the proxy may have been set for it.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import keys
from .clients import networks

PROXY_READ_TIMEOUT = 60.0
"""nginx's default ``proxy_read_timeout``: behind such a proxy, a response silent for longer is cut."""


class SettingError(ValueError):
    """Settings that break their rules; the message has one line per setting, naming it, where it stands and why."""

    def __init__(self, problems: list[str]):
        super().__init__(problems[0] if len(problems) == 1 else
                         f"{len(problems)} longpoll settings are wrong:\n" + "\n".join(f"- {p}" for p in problems))
        self.problems = problems


class SettingWarning(UserWarning):
    """A setting that works in longpoll but that a proxy in front, left as it usually is, would defeat."""


@dataclass(frozen=True)
class Rule:
    """The numbers a setting may be: whole or not, and between which bounds."""

    whole: bool = False
    least: float = 0.0
    above: bool = True  # the value must exceed ``least``, not equal it
    most: float | None = None
    why: str = ""  # the reason for the bounds, said when they are broken

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        low = f"above {self.least:g}" if self.above else f"at least {self.least:g}"
        return f"{kind} {low}" + (f" and at most {self.most:g}" if self.most is not None else "")

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` under this rule, or None."""
        wanted = f"must be {self.describe()}"
        if isinstance(value, str):
            return f"{wanted}, not the string {value!r} (a number is written without quotes)"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{wanted}, not {value!r}"
        if self.whole and not float(value).is_integer():
            return f"{wanted}, not {value!r}, which has a fraction"
        if value < self.least or self.above and value == self.least or self.most is not None and value > self.most:
            return f"{wanted}, not {value!r}" + (f": {self.why}" if self.why else "")
        return None


HOLD = Rule(most=60.0, why="docs/protocol.md holds a poll 0-60 s")
BATCH = Rule(whole=True, least=1, above=False, most=1000, why="docs/protocol.md's max is 1-1000 items")
COUNT = Rule(whole=True, least=1, above=False)
SECONDS = Rule()

RULES: dict[str, Rule] = {
    # read on every poll, into PollLimits
    "default_timeout": HOLD,
    "max_timeout": HOLD,
    "default_max": BATCH,
    "max_items": BATCH,
    "max_param_chars": Rule(whole=True, least=128, above=False,
                            why="a session key and a cursor may be 128 characters, and a poll must carry them"),
    "heartbeat": SECONDS,
    "max_stream_seconds": SECONDS,
    "max_batch_bytes": COUNT,
    # read when an endpoint's own registry is made
    "idle_timeout": SECONDS,
    "max_sessions": COUNT,
    "max_sessions_per_identifier": COUNT,
    "max_sessions_per_address": COUNT,
    "polls_per_second": SECONDS,
    "poll_burst": Rule(least=1, above=False, why="a burst of less than one poll refuses every poll"),
    "unconfirmed_idle_timeout": SECONDS,
    # process-wide
    "max_held_polls": COUNT,
    "max_stream_bytes": Rule(whole=True, least=64 * 1024, above=False,
                             why="a stream's frame may be a whole batch (longpoll.max_batch_bytes, 256 KiB by "
                                 "default): below 64 KiB the budget would end streams that are merely busy"),
}

PROCESS_WIDE = {"max_held_polls", "max_stream_bytes", "route", "secret"}
"""Read from the global config alone: anywhere else they would be silently ignored."""

KNOWN = set(RULES) | {"trusted_proxies", "route", "secret"}

PAIRS = (("default_timeout", "max_timeout", "a poll that gives no timeout would be held longer than any poll may ask"),
         ("default_max", "max_items", "a poll that gives no max would take more items than any poll may ask"))
"""(default, bound, why): a default above its bound given in the same place contradicts it.  One given in
another place does not: a poll's default is then the bound (``params.poll_params``)."""

PROXY_CUT = {"heartbeat": "a stream that has nothing to send writes a heartbeat only this often, and a proxy "
                          "cuts a response silent for longer than its read timeout (nginx's default "
                          "proxy_read_timeout is 60 s; docs/deploying.md sets 75 s): keep it well below the "
                          "proxy's"}
"""Settings that a proxy left at its usual read timeout defeats above PROXY_READ_TIMEOUT, and why."""


def config_label(key: str) -> str:
    return f"longpoll.{key}"


def problems(settings: Mapping[str, Any], where: str, *, label: Callable[[str], str] = config_label,
             process_wide: bool = True, pairs: bool = True, warn: bool = True) -> list[str]:
    """Every rule the settings of one place break, each said as "<label> <where>: <why>".

    ``settings`` are the place's longpoll settings (keys without ``longpoll.``;
    None means the default).  ``process_wide``: the place is the global
    config, where the process-wide settings are read.  ``pairs``: the place
    is one the user wrote (a section, the decorator), where a default above
    its bound contradicts it (not a request's config, merged from several).
    ``warn``: warn (:class:`SettingWarning`) of what a proxy would defeat.
    """
    found = []
    for key, value in settings.items():
        if value is None:
            continue
        problem = _problem(key, value, process_wide)
        if problem is not None:
            found.append(f"{label(key)} {where}: {problem}")
        elif warn and key in PROXY_CUT and value > PROXY_READ_TIMEOUT:
            warnings.warn(f"{label(key)} {where} is {value:g} s: {PROXY_CUT[key]}", SettingWarning, stacklevel=2)
    if pairs:
        for default, bound, why in PAIRS:
            low, high = settings.get(default), settings.get(bound)
            if low is not None and high is not None and _problem(default, low, True) is None \
                    and _problem(bound, high, True) is None and low > high:
                found.append(f"{label(default)} {where} is {low!r}, above {label(bound)} ({high!r}) there: {why}")
    return found


def check(settings: Mapping[str, Any], where: str, **options: Any) -> None:
    """:func:`problems`, raised as one SettingError if there are any."""
    found = problems(settings, where, **options)
    if found:
        raise SettingError(found)


def value(key: str, given: Any) -> Any:
    """A checked setting as the code uses it: a whole number as an int (``5000.0`` is 5000), else as given."""
    return int(given) if key in RULES and RULES[key].whole and given is not None else given


def _problem(key: str, given: Any, process_wide: bool) -> str | None:
    if key not in KNOWN:
        close = difflib.get_close_matches(key, sorted(KNOWN), n=1)
        hint = f" (did you mean longpoll.{close[0]}?)" if close else ""
        return f"is not a longpoll setting{hint}; the settings are {', '.join(sorted(KNOWN))}"
    if key in PROCESS_WIDE and not process_wide:
        return ("is process-wide and read from the global config alone, where it belongs "
                "(cherrypy.config.update, or the [global] section); here it would be ignored")
    if key in ("route", "secret"):  # this process's name in its keys, what seals them (keys.py)
        try:
            keys.check_route(given) if key == "route" else keys.check_secret(given)
        except ValueError as exc:
            return str(exc)
        return None
    if key == "trusted_proxies":
        if not isinstance(given, (str, list, tuple)) or not all(isinstance(entry, str) for entry in
                                                                 ((given,) if isinstance(given, str) else given)):
            return f"must be an address or network, or a list of them, not {given!r}"
        try:
            networks((given,) if isinstance(given, str) else tuple(given))
        except ValueError as exc:
            return str(exc).removeprefix("longpoll.trusted_proxies: ")
        return None
    return RULES[key].problem(given)
