"""The status streams' feeds: a filter at the hub's index, and the same filter on replayed history.

A sample or filter session is ``broker.feed("statuses")`` with the
session's filter: live statuses reach it through the hub's indexed router
(``router.py``), and a feed that resumes from a position (its session moved
to another process, or the process restarted) replays the topic's history
through :func:`delivered`, the naive check of the book, which the router is
proven (by property tests) to agree with.
"""

from __future__ import annotations

import functools
from typing import Any

from ... import Broker, Source
from .store import TOPIC


def delivered(flt: Any, item: Any) -> Any:
    """What a session with this filter gets for this log item (None: nothing)."""
    if not isinstance(item, dict) or not flt.check(item):
        return None
    return {"id": item["id"], "deleted": True} if item.get("deleted") else item


def status_feed(broker: Broker, flt: Any) -> Source:
    """The statuses a filter lets through, from now on (or from where its session was)."""
    return broker.feed(TOPIC, filter=flt, deliver=functools.partial(delivered, flt))
