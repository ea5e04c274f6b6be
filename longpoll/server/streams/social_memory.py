"""The social graph in the embedded store: the book's listings under the store's one lock.

Each method is one critical section, as each Redis script is one atomic
step, and follows the same steps as its script in ``social_redis.py``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any

from ... import BadParameter, NotFound
from .social import GRAPH, HomeSnapshot, SocialLimits
from .timelines import ZSet

MEMORY_PASS = 100
"""Followers one pass writes here: a pass holds the store's lock and the GIL, which posting needs too."""


def now_ms() -> int:
    return int(time.time() * 1000)


class MemorySocial:
    """Mixed into MemoryStore, whose lock, users, statuses and log it uses."""

    _lock: threading.Lock
    _users: dict[int, dict[str, Any]]
    _logins: dict[str, int]
    _statuses: dict[int, dict[str, Any]]
    _status_ids: int
    log: Any

    def _init_social(self, limits: SocialLimits) -> None:
        self.social_limits = limits
        self._following: defaultdict[int, ZSet] = defaultdict(ZSet)
        self._followers: defaultdict[int, ZSet] = defaultdict(ZSet)
        self._profiles: defaultdict[int, ZSet] = defaultdict(ZSet)
        self._homes: defaultdict[int, ZSet] = defaultdict(ZSet)
        self._jobs: deque[tuple[str, int, int, float]] = deque()  # (kind, status id, author, last follower score)
        self._jobs_ready = threading.Condition(self._lock)

    def _author(self, token: str) -> dict[str, Any]:
        raise NotImplementedError

    # -- what posting and deleting add (called under the lock) --------------

    def _timelines_post(self, uid: int, status_id: int) -> None:
        size = self.social_limits.timeline_size
        for timeline in (self._profiles[uid], self._homes[uid]):
            timeline.add(status_id, status_id)
            timeline.trim(size)
        self._enqueue("a", status_id, uid)

    def _timelines_delete(self, uid: int, status_id: int) -> None:
        self._profiles[uid].remove(status_id)
        self._homes[uid].remove(status_id)
        self._enqueue("d", status_id, uid)

    def _enqueue(self, kind: str, status_id: int, uid: int) -> None:
        if self._followers.get(uid):
            self._jobs.append((kind, status_id, uid, 0))
            self._jobs_ready.notify_all()

    # -- the graph ----------------------------------------------------------

    def authenticate(self, token: str) -> int:
        with self._lock:
            return self._author(token)["id"]

    def _uid_of(self, login: str) -> int:
        uid = self._logins.get(login.lower())
        if uid is None:
            raise NotFound(f"no user {login!r}")
        return uid

    def user(self, login: str) -> dict[str, Any]:
        with self._lock:
            user = self._users[self._uid_of(login)]
            return {"id": user["id"], "login": user["login"], "name": user["name"],
                    "followers": len(self._followers.get(user["id"], ())),
                    "following": len(self._following.get(user["id"], ())),
                    "posts": user["posts"], "signup": user["signup"]}

    def user_name(self, uid: int) -> str | None:
        user = self._users.get(uid)
        return None if user is None else user["name"]

    def follow(self, token: str, login: str) -> bool:
        """The book's follow_user, plus the graph event, in one critical section."""
        with self._lock:
            uid = self._author(token)["id"]
            other = self._uid_of(login)
            if other == uid:
                raise BadParameter("login", "you cannot follow yourself")
            following = self._following[uid]
            if other in following:
                return False
            if len(following) >= self.social_limits.max_following:
                raise BadParameter("login", f"you follow {len(following)} users, the most allowed; "
                                            "unfollow someone first")
            now = now_ms()
            following.add(other, following.stamp(now))
            followers = self._followers[other]
            followers.add(uid, followers.stamp(now))
            size = self.social_limits.timeline_size
            home = self._homes[uid]
            for status_id in self._profiles[other].newest(0, size - 1):
                home.add(status_id, status_id)
            home.trim(size)
            self._publish_graph(uid, other, True)
            return True

    def unfollow(self, token: str, login: str) -> bool:
        """The book's unfollow_user, plus the graph event."""
        with self._lock:
            uid = self._author(token)["id"]
            other = self._uid_of(login)
            if other == uid:
                raise BadParameter("login", "you cannot unfollow yourself")
            if not self._following[uid].remove(other):
                return False
            self._followers[other].remove(uid)
            home = self._homes[uid]
            for status_id in self._profiles[other].newest(0, self.social_limits.timeline_size - 1):
                home.remove(status_id)
            self._publish_graph(uid, other, False)
            return True

    def _publish_graph(self, uid: int, other: int, following: bool) -> None:
        self.log.append(GRAPH, {"uid": uid, "other": other, "following": following, "sid": self._status_ids})

    # -- reading --------------------------------------------------------------

    def connections(self, login: str, which: str, before: int | None,
                    count: int) -> tuple[list[dict[str, Any]], int | None]:
        with self._lock:
            uid = self._uid_of(login)
            index = (self._followers if which == "followers" else self._following).get(uid, ZSet())
            rows = index.below(before, count + 1)
            users = [{"id": member, "login": self._users[member]["login"], "name": self._users[member]["name"],
                      "since": score / 1000} for member, score in rows[:count]]
            return users, (int(rows[count - 1][1]) if len(rows) > count else None)

    def timeline(self, which: str, uid: int, page: int, count: int) -> list[dict[str, Any]]:
        with self._lock:
            index = (self._profiles if which == "profile" else self._homes).get(uid, ZSet())
            ids = index.newest((page - 1) * count, page * count - 1)
            return [dict(self._statuses[i]) for i in ids if i in self._statuses]

    def home_snapshot(self, uid: int, backfill: int) -> HomeSnapshot:
        with self._lock:
            following = self._following.get(uid, ZSet())
            snapshot = HomeSnapshot(self.log.tail(), self._status_ids, frozenset(following.newest(0, len(following))))
            if backfill:
                ids = set(self._homes.get(uid, ZSet()).newest(0, backfill - 1))
                # Statuses whose syndication has not reached this user yet belong in it too (one whose
                # pass has is in the home timeline already: see HOME_SNAPSHOT in social_redis.py).
                for kind, status_id, author, _ in self._jobs:
                    if kind == "a" and author in following:
                        ids.add(status_id)
                newest = sorted((i for i in ids if i in self._statuses), reverse=True)[:backfill]
                snapshot.backfill = [dict(self._statuses[i]) for i in reversed(newest)]
            return snapshot

    # -- syndication ----------------------------------------------------------

    def syndicate_pass(self) -> bool:
        """One pass of the book's syndicate_status (or of removing a deleted status)."""
        with self._lock:
            if not self._jobs:
                return False
            kind, status_id, author, done = self._jobs.popleft()
            if kind == "a" and status_id not in self._statuses:
                return True  # deleted meanwhile: its removal job follows
            per_pass, size = min(self.social_limits.fanout_per_pass, MEMORY_PASS), self.social_limits.timeline_size
            rows = self._followers[author].above(done, per_pass)
            for follower, _ in rows:
                home = self._homes[follower]
                if kind == "a":
                    home.add(status_id, status_id)
                    home.trim(size)
                else:
                    home.remove(status_id)
            if len(rows) == per_pass:
                self._jobs.append((kind, status_id, author, rows[-1][1]))
            return True

    def wait_for_jobs(self, timeout: float) -> None:
        with self._lock:
            self._jobs_ready.wait_for(lambda: self._jobs, timeout)

    def syndication_pending(self) -> int:
        with self._lock:
            return len(self._jobs)
