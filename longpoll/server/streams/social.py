"""The social graph of *Redis in Action* chapter 8: what both stores provide.

Following and followers are sorted sets scored by when the follow happened
(milliseconds, made unique within each set so that a score is a paging
cursor); profile and home timelines are sorted sets of status ids scored by
the id itself (ids increase in the order statuses are published, so newest
first is highest id first, with no ties).  Every write is one atomic step
(one Lua script on Redis, one critical section in memory).

A follow or unfollow that changes the graph is appended to the log under the
topic ``graph`` in that same step, as ``{"uid", "other", "following", "sid"}``
(``sid``: the newest status id at that moment).  Statuses and graph changes
thus reach every process's hub in one order, which is what lets a home stream
apply "the follow graph at the moment each status is posted" exactly (see
``home.py``).

Syndication (a new status copied into the home timeline of each follower of
its author, the book's ``syndicate_status``) and the removal of a deleted
status from those timelines are jobs on a queue that a background worker in
every process works through, ``fanout_per_pass`` followers at a time, each
pass atomic: a post never waits for its author's followers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

GRAPH = "graph"
"""The log topic of follow and unfollow events."""


@dataclass(frozen=True)
class SocialLimits:
    max_following: int = 5000  # follows per user (the book has none; Twitter's first limit was 5,000)
    timeline_size: int = 1000  # entries a profile or home timeline keeps (the book's HOME_TIMELINE_SIZE)
    fanout_per_pass: int = 250  # followers one syndication pass writes (the book's POSTS_PER_PASS is 1,000,
    # but a pipeline; a pass here is one Lua script, which holds Redis: 250 keep it under a millisecond)
    max_count: int = 200  # most statuses or users in one page
    default_statuses: int = 30  # statuses per page by default (the book's get_status_messages)
    default_users: int = 50  # users per page of followers or following
    max_backfill: int = 200  # home statuses a home stream may start with


@dataclass
class HomeSnapshot:
    """A user's follow graph at one log position, read in one atomic step."""

    position: str  # the newest log entry at that moment
    sid: int  # the newest status id at that moment
    following: frozenset[int]
    backfill: list[dict[str, Any]] = field(default_factory=list)  # newest home statuses, oldest first


def graph_event(item: Any) -> tuple[int, int, bool, int]:
    """(uid, other, following, sid) of a graph log item; TypeError if it is not one."""
    if not isinstance(item, dict):
        raise TypeError("a graph event is a JSON object")
    uid, other, following, sid = item.get("uid"), item.get("other"), item.get("following"), item.get("sid")
    if not (_whole(uid) and _whole(other) and isinstance(following, bool) and _whole(sid)):
        raise TypeError("a graph event has integer uid, other and sid, and a boolean following")
    return uid, other, following, sid


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class SocialStore(Protocol):
    """The social graph's half of a store (``MemoryStore`` and ``RedisStore`` both have it)."""

    social_limits: SocialLimits

    def authenticate(self, token: str) -> int:
        """The token's user id; Unauthorized if the token is unknown."""

    def user(self, login: str) -> dict[str, Any]:
        """The profile: id, login, name, followers, following, posts, signup; NotFound if none."""

    def follow(self, token: str, login: str) -> bool:
        """Follow; True if it changed anything.  BadParameter for oneself or past the limit."""

    def unfollow(self, token: str, login: str) -> bool: ...

    def connections(self, login: str, which: str, before: int | None,
                    count: int) -> tuple[list[dict[str, Any]], int | None]:
        """A page of ``followers`` or ``following``, newest first, and the cursor of the next page."""

    def timeline(self, which: str, uid: int, page: int, count: int) -> list[dict[str, Any]]:
        """A page of the ``profile`` or ``home`` timeline, newest first (deleted statuses left out)."""

    def home_snapshot(self, uid: int, backfill: int) -> HomeSnapshot: ...

    def syndicate_pass(self) -> bool:
        """Do one pass of the oldest job; False when there was none."""

    def wait_for_jobs(self, timeout: float) -> None: ...

    def syndication_pending(self) -> int: ...
