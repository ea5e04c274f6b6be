"""The home stream against a model computed from the log alone.

Random follows, unfollows, posts and deletes by a few users; home sessions
started while their process's hub lags behind the snapshot (or is ahead of
it), and moved mid-stream to another process (a second hub on the same log)
the way a durable session is (its definition and position, nothing else).
Whatever the interleaving, each session must get exactly what the log says:
every status posted after its start by its user or by someone its user
followed at that moment, and the deletion of each status it delivered, in
log order.
"""

from __future__ import annotations

import random
from collections import deque
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from cherrypy.process import wspbus

from longpoll.backends.memory import MemoryLog
from longpoll.hub import Hub
from longpoll.server.streams.home import GraphRouter, Home, HomeFeed, HomeIndex, SocialRouter
from longpoll.server.streams.social import GRAPH
from longpoll.server.streams.store import TOPIC, MemoryStore

USERS = 4


class Process:
    """A hub of its own on the shared log, dispatched by hand so that its lag is the test's choice."""

    def __init__(self, log: MemoryLog):
        self.log = log
        self.hub = Hub(log, bus=wspbus.Bus())  # never started: nothing reads unless pump() does
        home = HomeIndex()
        self.hub.route(TOPIC, SocialRouter(home))
        self.hub.route(GRAPH, GraphRouter(self.hub, home))
        self.hub.position = log.tail()
        self.broker = SimpleNamespace(log=log, subscribe=self.hub.subscribe)

    def pump(self, upto: int) -> None:
        while int(self.hub.position) < upto:
            self.hub._dispatch([e for e in self.log.read(self.hub.position, 0, 100) if int(e.position) <= upto])


class OldSnapshots:
    """The store, except that a home snapshot may be one taken a while ago (the hub is then ahead of it)."""

    def __init__(self, store: MemoryStore, rng: random.Random):
        self.store, self.rng, self.kept = store, rng, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def home_snapshot(self, uid: int, backfill: int):
        fresh = self.store.home_snapshot(uid, backfill)
        old = self.kept.get((uid, backfill))
        if old is None or self.rng.random() < 0.5:
            self.kept[(uid, backfill)] = fresh
            return fresh
        return old


def expected(log: MemoryLog, uid: int, start: int, backfill: list[dict]) -> list[Any]:
    """What a home session of uid started at log position `start` must get, from the log alone."""
    following: set[int] = set()
    delivered = {status["id"] for status in backfill}
    out: list[Any] = list(backfill)
    for entry in log.read("0", 0, 1_000_000):
        item = orjson.loads(entry.raw)
        if entry.topic == GRAPH and item["uid"] == uid:
            (following.add if item["following"] else following.discard)(item["other"])
        elif entry.topic == TOPIC and int(entry.position) > start:
            if item.get("deleted"):
                if item["id"] in delivered:
                    out.append({"id": item["id"], "deleted": True})
            elif item["uid"] == uid or item["uid"] in following:
                delivered.add(item["id"])
                out.append(item)
    return out


class Session:
    def __init__(self, world: World, uid: int):
        self.world, self.uid, self.items = world, uid, []
        self.process = world.rng.choice(world.processes)
        backfill = world.rng.choice([0, 0, 2, 5])
        self.feed = HomeFeed(self.process.broker, world.store, {"kind": "home", "identifier": f"s{uid}",
                                                                "uid": uid, "backfill": backfill})
        self.start = int(self.feed.position)
        self.backfill = list(self.feed._pending)

    def take(self, most: int) -> None:
        for _ in range(most):
            found, item = self.feed.take()
            if not found:
                return
            self.items.append(item)

    def move(self) -> None:
        """What a durable session does on another process: its feed built again from its checkpoint."""
        checkpoint = orjson.loads(orjson.dumps(self.feed.checkpoint()))
        self.feed.close()
        self.process = self.world.rng.choice(self.world.processes)
        self.feed = HomeFeed(self.process.broker, self.world.store, {"identifier": checkpoint["identifier"],
                                                                       "uid": checkpoint["uid"]}, checkpoint)


class World:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.log = MemoryLog()
        self.memory = MemoryStore(self.log)
        self.store = OldSnapshots(self.memory, self.rng)
        self.tokens = {}
        for i in range(1, USERS + 1):
            made = self.memory.create_user(f"user{i}", f"User {i}")
            self.tokens[made["id"]] = made["token"]
        self.processes = [Process(self.log), Process(self.log)]
        self.live: dict[int, list[int]] = {uid: [] for uid in self.tokens}

    def act(self) -> None:
        rng, uid = self.rng, self.rng.choice(list(self.tokens))
        other = rng.choice([u for u in self.tokens if u != uid])
        roll = rng.random()
        if roll < 0.2:
            self.memory.follow(self.tokens[uid], f"user{other}")
        elif roll < 0.35:
            self.memory.unfollow(self.tokens[uid], f"user{other}")
        elif roll < 0.85 or not self.live[uid]:
            self.live[uid].append(self.memory.post_status(self.tokens[uid], f"from {uid}", None)["id"])
        else:
            gone = self.live[uid].pop(rng.randrange(len(self.live[uid])))
            self.memory.delete_status(self.tokens[uid], gone)
        if rng.random() < 0.3:  # some syndication happens meanwhile, some not
            self.memory.syndicate_pass()

    def pump_some(self) -> None:
        for process in self.processes:
            if self.rng.random() < 0.5:
                process.pump(self.rng.randint(int(process.hub.position), int(self.log.tail())))


@pytest.mark.parametrize("seed", range(60))
def test_home_sessions_get_exactly_what_the_log_says(seed):
    world = World(seed)
    sessions: list[Session] = []
    for step in range(160):
        world.act()
        world.pump_some()
        if step % 40 == 5:
            sessions.append(Session(world, world.rng.choice(list(world.tokens))))
        for session in sessions:
            roll = world.rng.random()
            if roll < 0.3:
                session.take(world.rng.randint(1, 4))
            elif roll < 0.4:
                session.move()
    for process in world.processes:
        process.pump(int(world.log.tail()))
    for session in sessions:
        session.take(10_000)
        assert session.items == expected(world.log, session.uid, session.start, session.backfill), seed
        session.feed.close()
    assert any(session.items for session in sessions)


def test_a_subscription_whose_snapshot_the_index_cannot_bring_forward_is_refused():
    log = MemoryLog()
    store = MemoryStore(log)
    ann, bob = store.create_user("ann", "Ann"), store.create_user("bob", "Bob")
    process = Process(log)
    index = process.hub._routers[TOPIC].home
    index.history = deque(maxlen=1)  # the index remembers only the last graph event
    snapshot = store.home_snapshot(ann["id"], 0)
    store.follow(ann["token"], "bob")
    store.unfollow(ann["token"], "bob")
    process.pump(int(log.tail()))
    sub = process.hub.subscribe(TOPIC, Home(ann["id"], snapshot.following, snapshot.position))
    assert sub.filter.stale  # the follow was let go: the feed must take a new snapshot
    sub.close()
    feed = HomeFeed(process.broker, store, {"kind": "home", "identifier": "x", "uid": ann["id"]})
    assert not feed.sub.filter.stale and feed.sub.filter.initial == frozenset()
    assert bob["id"] not in index.authors and list(index.users) == [ann["id"]]
    feed.close()
    assert not index.users and not index.authors and not index.following
