"""Which sessions get a status: indexes instead of asking every session.

The book runs each session's ``check`` on each status: O(sessions) per status.
Here each filter is entered into an index when its session subscribes, and a
status only looks up what it could match:

- sample: residue ``id % 100`` -> subscriptions;
- track: each phrase is filed under one of its words (its longest, most
  likely the rarest); a status looks up its own words and checks only the
  phrases filed there;
- follow: ``@login`` -> subscriptions; a status looks up its author and the
  ``@words`` it contains;
- locations: a grid of CELL-degree cells -> the boxes overlapping each cell;
  a status checks only the boxes of its own cell.

A deletion is routed like the status it deletes (the book's format: the
status with ``"deleted": true``) and delivered as ``{"id", "deleted": true}``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ... import Subscription
from .filters import AnyOf, Follow, Locations, Sample, Track, parse_location, words_of

CELL = 10.0
"""Grid cell size in degrees: a whole-world box fills 648 cells."""


def _cells(box: tuple[float, float, float, float]) -> Iterable[tuple[int, int]]:
    lon1, lat1, lon2, lat2 = box
    for x in range(_cell(lon1, 180), _cell(lon2, 180) + 1):
        for y in range(_cell(lat1, 90), _cell(lat2, 90) + 1):
            yield x, y


def _cell(degrees: float, half: float) -> int:
    return min(int(math.floor((degrees + half) / CELL)), int(2 * half / CELL) - 1)


class StatusRouter:
    def __init__(self) -> None:
        self._sample: defaultdict[int, dict[Subscription, None]] = defaultdict(dict)
        self._track: defaultdict[str, dict[Subscription, list[frozenset[str]]]] = defaultdict(dict)
        self._follow: defaultdict[str, dict[Subscription, None]] = defaultdict(dict)
        self._grid: defaultdict[tuple[int, int], dict[Subscription, list[tuple]]] = defaultdict(dict)
        self._subs: dict[Subscription, None] = {}

    # -- the index ---------------------------------------------------------

    def add(self, sub: Subscription) -> None:
        flt = sub.filter
        for part in flt.parts if isinstance(flt, AnyOf) else [flt]:
            if isinstance(part, Sample):
                for residue in part.residues:
                    self._sample[residue][sub] = None
            elif isinstance(part, Track):
                for phrase in part.phrases:
                    self._track[max(phrase, key=len)].setdefault(sub, []).append(phrase)
            elif isinstance(part, Follow):
                for name in part.names:
                    self._follow[name][sub] = None
            elif isinstance(part, Locations):
                for box in part.boxes:
                    for cell in _cells(box):
                        self._grid[cell].setdefault(sub, []).append(box)
            else:
                raise TypeError(f"not a status filter: {part!r}")
        self._subs[sub] = None

    def remove(self, sub: Subscription) -> None:
        if sub not in self._subs:
            return
        del self._subs[sub]
        flt = sub.filter
        for part in flt.parts if isinstance(flt, AnyOf) else [flt]:
            if isinstance(part, Sample):
                keys: Iterable[Any] = part.residues
                index: dict = self._sample
            elif isinstance(part, Track):
                keys, index = {max(phrase, key=len) for phrase in part.phrases}, self._track
            elif isinstance(part, Follow):
                keys, index = part.names, self._follow
            else:
                keys, index = {cell for box in part.boxes for cell in _cells(box)}, self._grid
            for key in keys:
                members = index.get(key)
                if members is not None:
                    members.pop(sub, None)
                    if not members:
                        del index[key]

    def members(self) -> list[Subscription]:
        return list(self._subs)

    def __len__(self) -> int:
        return len(self._subs)

    # -- routing -----------------------------------------------------------

    def match(self, status: dict[str, Any]) -> dict[Subscription, None]:
        """Every subscription whose filter matches the status, each once."""
        matched: dict[Subscription, None] = {}
        status_id = status["id"]
        if not isinstance(status_id, int) or isinstance(status_id, bool):
            raise TypeError("status id must be an integer")
        matched.update(self._sample.get(status_id % 100, {}))
        message = status.get("message", "")
        login = status.get("login", "")
        if not isinstance(message, str) or not isinstance(login, str):
            raise TypeError("message and login must be strings")
        words = words_of(message)
        if self._track:
            for word in words:
                for sub, phrases in self._track.get(word, {}).items():
                    if sub not in matched and any(phrase <= words for phrase in phrases):
                        matched[sub] = None
        if self._follow:
            for name in [w for w in words if w.startswith("@")] + (["@" + login.lower()] if login else []):
                matched.update(self._follow.get(name, {}))
        if self._grid:
            point = parse_location(status.get("location"))
            if point is not None:
                lat, lon = point
                for sub, boxes in self._grid.get((_cell(lon, 180), _cell(lat, 90)), {}).items():
                    if sub not in matched and any(b[1] <= lat <= b[3] and b[0] <= lon <= b[2] for b in boxes):
                        matched[sub] = None
        return matched

    def route(self, item: Any) -> list[tuple[Subscription, Any]]:
        if not isinstance(item, dict):
            raise TypeError("a status must be a JSON object")
        matched = self.match(item)
        if item.get("deleted"):
            notice = {"id": item["id"], "deleted": True}
            return [(sub, notice) for sub in matched]
        return [(sub, item) for sub in matched]

