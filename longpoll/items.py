"""Items from a log, decoded once and shared by every session that gets them.

An entry of a log arrives as JSON.  The hub decodes it once for all the live
sessions it routes it to, and a feed that starts with history (``backfill=``)
or replays it (a session resumed from its position) decodes each entry once
too: :func:`decoded` hands every reader of the same entry the same
:class:`Item`, for as long as anyone holds it.  Sessions send an item's own
bytes (``Item.raw``) instead of encoding it again, so what a thousand
sessions keep of one item is one item, not a thousand copies.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import orjson

from .backends.base import Entry


class Item(dict):
    """An item as the log holds it, with the JSON it came as.  Shared by every session that gets it: never
    change one."""

    __slots__ = ("raw", "__weakref__")
    raw: bytes


class Shared:
    """The items of one log decoded in this process, each once while anyone holds it (one per hub)."""

    def __init__(self) -> None:
        self._items: weakref.WeakValueDictionary[str, Item] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def decoded(self, entry: Entry, shared: bool = True) -> Any:
        """The entry's item, the same object for every reader while one holds it (``shared``: the entry's
        position names it alone); raises ``orjson.JSONDecodeError`` for an entry that is not JSON.  Items that
        are not JSON objects are small values (numbers, strings, lists) and decoded for each reader."""
        found = self._items.get(entry.position) if shared else None
        if found is not None:
            return found
        value = orjson.loads(entry.raw)
        if type(value) is not dict:
            return value
        item = Item(value)
        item.raw = entry.raw
        if not shared:
            return item
        with self._lock:
            return self._items.setdefault(entry.position, item)
