"""Items as JSON, once, at the size they are.

orjson returns its bytes in a buffer of at least 4 KiB, whatever the length
of the JSON: a kept ``orjson.dumps(7)`` holds 4 KiB.  Everything longpoll
keeps beyond one request (a log entry, a batch sent and not yet
acknowledged) is therefore copied to bytes of its own length with
:func:`exact`; answers that are sent and dropped are not.

orjson handles integers of up to 64 bits; an item with a larger one is
encoded by the standard library instead, with the same conventions, so that
``2**70`` is delivered rather than ending its session.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson

OPTIONS = orjson.OPT_NON_STR_KEYS
"""Dict keys that are not strings become strings, as the json module does."""

Default = Callable[[Any], Any]


class NotJSON(TypeError):
    """An item that cannot be encoded; the message names the type that stopped it."""


def exact(raw: bytes) -> bytes:
    """``raw`` in bytes of its own length (orjson's come in a buffer of 4 KiB or more)."""
    return memoryview(raw).tobytes()


def dumps(item: Any, default: Default | None = None) -> bytes:
    """An item's JSON (to send now, not to keep: see :func:`exact`)."""
    try:
        return orjson.dumps(item, default=default, option=OPTIONS)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise NotJSON(str(exc).replace("Type is not JSON serializable: ", "cannot encode a ")) from None
    return _stdlib(item, default)


def join(parts: Iterable[bytes]) -> bytes:
    """Encoded items as one JSON array, in bytes of its own length."""
    return b"[" + b",".join(parts) + b"]"


def _stdlib(item: Any, default: Default | None) -> bytes:
    def fallback(value: Any) -> Any:
        if isinstance(value, datetime.datetime | datetime.date | datetime.time):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, uuid.UUID):
            return str(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if default is not None:
            return default(value)
        raise NotJSON(f"cannot encode a {type(value).__module__}.{type(value).__qualname__}")

    try:
        return json.dumps(_string_keys(item), default=fallback, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except ValueError as exc:
        raise NotJSON(str(exc)) from None


def _string_keys(item: Any) -> Any:
    """Non-string keys as orjson's OPT_NON_STR_KEYS writes them (json.dumps refuses some of them)."""
    if isinstance(item, dict):
        return {k if isinstance(k, str) else orjson.dumps(k, option=OPTIONS).decode().strip('"'): _string_keys(v)
                for k, v in item.items()}
    if isinstance(item, list | tuple):
        return [_string_keys(v) for v in item]
    return item
