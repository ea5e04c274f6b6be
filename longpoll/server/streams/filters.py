"""The stream filters of *Redis in Action* chapter 8, parsed strictly.

Each filter keeps the book's semantics exactly (docs/protocol.md restates them) and
has a ``check(status)``, which is what the book runs for every session on
every status.  The hub does not call ``check``: it finds matching sessions
through the indexes in ``router.py``.  ``check`` stays as the reference the
router is tested (and benchmarked) against.

Limits are explicit and configurable through :class:`FilterLimits`.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

from ... import BadParameter

DECIMAL = re.compile(r" *[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)? *")
"""A coordinate as a person types it."""

LOGIN = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class FilterLimits:
    max_phrases: int = 400  # track: Twitter's limit
    max_phrase_chars: int = 60
    max_follow: int = 5000
    max_boxes: int = 25


def words_of(message: str) -> set[str]:
    """The book's tokenisation: lower case, split on whitespace, punctuation kept."""
    return set(message.lower().split())


def parse_location(location: Any) -> tuple[float, float] | None:
    """A status's ``"lat,lon"``, or None when absent or malformed."""
    if not isinstance(location, str):
        return None
    parts = location.split(",")
    if len(parts) != 2 or not all(DECIMAL.fullmatch(part) for part in parts):
        return None
    lat, lon = float(parts[0]), float(parts[1])
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


@dataclass
class Sample:
    """Keeps statuses whose ``id % 100`` is in a set of residues seeded by the identifier."""

    identifier: str
    percent: int
    mask: int = field(init=False, repr=False)  # bit r set: residue r kept (40 bytes, not a 700-byte set)

    def __post_init__(self) -> None:
        ids = list(range(100))
        random.Random(self.identifier).shuffle(ids)
        self.mask = sum(1 << r for r in ids[:max(self.percent, 1)])

    @property
    def residues(self) -> frozenset[int]:
        return frozenset(r for r in range(100) if self.mask >> r & 1)

    def check(self, status: dict[str, Any]) -> bool:
        return bool(self.mask >> status["id"] % 100 & 1)


@dataclass
class Track:
    """Matches when every word of one phrase is among the status's words."""

    phrases: list[frozenset[str]]

    def check(self, status: dict[str, Any]) -> bool:
        words = words_of(status["message"])
        return any(phrase <= words for phrase in self.phrases)


@dataclass
class Follow:
    """Matches statuses by one of the logins, or mentioning ``@login`` as a word."""

    names: frozenset[str]  # "@login", lower case

    def check(self, status: dict[str, Any]) -> bool:
        words = words_of(status["message"])
        words.add("@" + status["login"].lower())
        return bool(words & self.names)


@dataclass
class Locations:
    """Matches statuses whose location lies in one of the boxes (edges included)."""

    boxes: list[tuple[float, float, float, float]]  # lon1, lat1, lon2, lat2

    def check(self, status: dict[str, Any]) -> bool:
        point = parse_location(status.get("location"))
        if point is None:
            return False
        lat, lon = point
        return any(b[1] <= lat <= b[3] and b[0] <= lon <= b[2] for b in self.boxes)


@dataclass
class AnyOf:
    """A filter request may combine track, follow and locations: a status matching any is kept."""

    parts: list[Track | Follow | Locations]

    def check(self, status: dict[str, Any]) -> bool:
        return any(part.check(status) for part in self.parts)


Filter = Sample | Track | Follow | Locations | AnyOf


# -- parsing ---------------------------------------------------------------

def _values(name: str, value: Any, numbers: bool = False) -> list[str]:
    """Comma-separated text, or a JSON list of strings (or of numbers, for boxes)."""
    if value is None:
        return []
    if isinstance(value, list):
        parts = []
        allowed = (str, int, float) if numbers else (str,)
        for v in value:
            if isinstance(v, bool) or not isinstance(v, allowed):
                raise BadParameter(name, "list items must be strings" + (" or numbers" if numbers else ""))
            parts.extend(str(v).split(",") if isinstance(v, str) else [str(v)])
        return parts
    if not isinstance(value, str):
        raise BadParameter(name, "must be comma-separated text")
    return value.split(",")


def parse_sample(identifier: str, percent: Any, default: int = 10) -> Sample:
    if percent is None:
        return Sample(identifier, default)
    if isinstance(percent, bool) or not (
            isinstance(percent, int) or isinstance(percent, str) and re.fullmatch(r" *[0-9]{1,3} *", percent)):
        raise BadParameter("percent", "must be a whole number from 1 to 100")
    value = int(percent)
    if not 1 <= value <= 100:
        raise BadParameter("percent", "must be a whole number from 1 to 100")
    return Sample(identifier, value)


def parse_track(value: Any, limits: FilterLimits) -> Track | None:
    raw = _values("track", value)
    if len(raw) > limits.max_phrases:
        raise BadParameter("track", f"at most {limits.max_phrases} phrases")
    phrases = []
    for phrase in raw:
        if len(phrase) > limits.max_phrase_chars:
            raise BadParameter("track", f"each phrase at most {limits.max_phrase_chars} characters")
        words = frozenset(phrase.lower().split())
        if words:
            phrases.append(words)
    return Track(phrases) if phrases else None


def parse_follow(value: Any, limits: FilterLimits) -> Follow | None:
    raw = [name.strip().lstrip("@") for name in _values("follow", value)]
    raw = [name for name in raw if name]
    if len(raw) > limits.max_follow:
        raise BadParameter("follow", f"at most {limits.max_follow} logins")
    for name in raw:
        if not LOGIN.fullmatch(name):
            raise BadParameter("follow", f"{name[:40]!r} is not a login (1-32 of A-Z a-z 0-9 _ . -)")
    return Follow(frozenset("@" + name.lower() for name in raw)) if raw else None


def parse_locations(value: Any, limits: FilterLimits, name: str = "locations") -> Locations | None:
    raw = [part.strip(" ") for part in _values(name, value, numbers=True)]
    if raw == [""] or not raw:
        return None
    if len(raw) % 4:
        raise BadParameter(name, "boxes are four numbers each: lon1,lat1,lon2,lat2 (south-west, then north-east)")
    if len(raw) // 4 > limits.max_boxes:
        raise BadParameter(name, f"at most {limits.max_boxes} boxes")
    if not all(DECIMAL.fullmatch(part) for part in raw):
        raise BadParameter(name, "boxes are numbers: lon1,lat1,lon2,lat2 (ASCII digits, no other characters)")
    numbers = [float(part) for part in raw]
    boxes = []
    for i in range(0, len(numbers), 4):
        lon1, lat1, lon2, lat2 = numbers[i:i + 4]
        if not all(math.isfinite(n) for n in (lon1, lat1, lon2, lat2)):
            raise BadParameter(name, "boxes are finite numbers")
        if not (-90 <= lat1 <= 90 and -90 <= lat2 <= 90):
            raise BadParameter(name, "latitudes lie from -90 to 90")
        if not (-180 <= lon1 <= 180 and -180 <= lon2 <= 180):
            raise BadParameter(name, "longitudes lie from -180 to 180")
        if lat1 > lat2 or lon1 > lon2:
            raise BadParameter(name, "a box is south-west corner then north-east corner; "
                                     "split a box across the antimeridian in two")
        boxes.append((lon1, lat1, lon2, lat2))
    return Locations(boxes)


def parse_filter(track: Any, follow: Any, locations: Any, limits: FilterLimits,
                 locations_name: str = "locations") -> Track | Follow | Locations | AnyOf:
    parts = [part for part in (parse_track(track, limits), parse_follow(follow, limits),
                               parse_locations(locations, limits, locations_name)) if part is not None]
    if not parts:
        raise BadParameter("track", "a filter needs at least one of track, follow or locations")
    return parts[0] if len(parts) == 1 else AnyOf(parts)
