"""The home stream and hydrators over HTTP, on both backends; home sessions that move between processes."""

from __future__ import annotations

import threading

import cherrypy
import httpx
import pytest

from longpoll import Broker, json_yield
from longpoll.server.streams.home import GraphRouter, HomeIndex, SocialRouter, home_feed
from longpoll.server.streams.redis_store import RedisStore
from longpoll.server.streams.social import GRAPH
from longpoll.server.streams.store import TOPIC
from longpoll.testing import Client
from tests.inproc import Process
from tests.procs import ServerProcess
from tests.social_helpers import HomeStream, auth, follow, home, store_of, syndicated, unfollow
from tests.streams_helpers import delete, post, settle, signup, unique
from tests.test_cli_and_docs import docs_block


def test_home_stream_gets_followed_and_own_statuses_only(client, broker):
    ann, ann_token = signup(client)
    bob, bob_token = signup(client)
    _, cy_token = signup(client)
    follow(client, bob_token, ann)
    stream = HomeStream(client, bob_token)
    wanted = [post(client, ann_token, "from ann"), post(client, bob_token, "from bob")]
    post(client, cy_token, "from cy, whom bob does not follow")
    settle(broker)
    assert stream.drain() == wanted


def test_a_follow_takes_effect_for_the_next_status(client, broker):
    ann, ann_token = signup(client)
    _, bob_token = signup(client)
    stream = HomeStream(client, bob_token)
    before = post(client, ann_token, "before the follow")
    assert follow(client, bob_token, ann).status_code == 200
    during = post(client, ann_token, "while followed")
    assert unfollow(client, bob_token, ann).status_code == 200
    post(client, ann_token, "after the unfollow")
    assert follow(client, bob_token, ann).status_code == 200
    again = post(client, ann_token, "followed again")
    settle(broker)
    assert stream.drain() == [during, again]
    assert before["id"] in home(client, bob_token)  # the timeline got it with the follow; the stream did not


def test_a_held_home_poll_is_released_by_a_followed_post(client, base):
    ann, ann_token = signup(client)
    _, bob_token = signup(client)
    follow(client, bob_token, ann)
    stream = HomeStream(client, bob_token)
    result: dict = {}

    def hold():
        with httpx.Client(base_url=base, timeout=60) as c:
            stream.client = c
            result["response"] = stream.poll(timeout=30)

    waiter = threading.Thread(target=hold)
    waiter.start()
    status = post(client, ann_token, "wake up")
    waiter.join(timeout=25)
    assert not waiter.is_alive() and result["response"].status_code == 200
    assert stream.ids() == [status["id"]]


def test_deletions_follow_only_the_statuses_the_session_delivered(client, broker):
    ann, ann_token = signup(client)
    cy, cy_token = signup(client)
    _, bob_token = signup(client)
    old = post(client, cy_token, "posted before bob followed cy")
    follow(client, bob_token, ann)
    stream = HomeStream(client, bob_token)
    delivered = post(client, ann_token, "bob gets this one")
    own = post(client, bob_token, "bob's own")
    unfollow(client, bob_token, ann)
    missed = post(client, ann_token, "after the unfollow")
    follow(client, bob_token, cy)
    for status, token in ((delivered, ann_token), (missed, ann_token), (old, cy_token), (own, bob_token)):
        assert delete(client, token, status["id"]).status_code == 200
    settle(broker)
    assert stream.drain() == [delivered, own, {"id": delivered["id"], "deleted": True},
                              {"id": own["id"], "deleted": True}]


def test_backfill_starts_with_the_newest_home_statuses_oldest_first(client, broker, backend):
    ann, ann_token = signup(client)
    _, bob_token = signup(client)
    follow(client, bob_token, ann)
    posted = [post(client, ann_token, f"earlier {i}") for i in range(5)]
    syndicated(store_of(f"/{backend}"))
    stream = HomeStream(client, bob_token, backfill=3)
    live = post(client, ann_token, "live")
    settle(broker)
    assert stream.drain() == posted[-3:] + [live]


@pytest.mark.parametrize("params,param", [({"backfill": "201"}, "backfill"), ({"backfill": "-1"}, "backfill"),
                                          ({"backfill": "x"}, "backfill"), ({"track": "x"}, "track"),
                                          ({"identifier": "bad id"}, "identifier")])
def test_bad_home_parameters_are_400(client, params, param):
    _, token = signup(client)
    response = client.get("/statuses/home.json", params={"identifier": "ok", **params}, headers=auth(token))
    assert response.status_code == 400 and response.json()["param"] == param


def test_the_home_stream_needs_the_token_and_the_same_user(client):
    _, token = signup(client)
    _, other = signup(client)
    assert client.get("/statuses/home.json", params={"identifier": "me"}).status_code == 401
    assert client.get("/statuses/home.json", headers=auth(token)).status_code == 401  # no identifier
    stream = HomeStream(client, token)
    params = {"identifier": stream.identifier, "key": stream.key, "cursor": stream.cursor, "timeout": 0}
    assert client.get("/statuses/home.json", params=params).status_code == 401
    assert client.get("/statuses/home.json", params=params, headers=auth(other)).status_code == 403
    assert client.post("/statuses/home.json", params=params, headers=auth(token)).status_code == 405
    assert stream.poll().status_code == 200


# -- hydrators --------------------------------------------------------------------


@pytest.fixture
def hydrators(backend):
    registered = cherrypy.tree.apps[f"/{backend}"].root.statuses.hydrators
    names = set(registered._entries)
    yield registered
    for name in set(registered._entries) - names:
        registered.unregister(name)


def test_serve_hydrates_each_status_with_its_authors_name_everywhere(client, broker):
    login = unique("named")
    token = client.post("/users", data={"login": login, "name": "Named Person"}).json()["token"]
    stream = HomeStream(client, token)
    status = post(client, token, "hello")
    assert status["name"] == "Named Person"
    settle(broker)
    assert stream.drain() == [status]
    assert client.get(f"/statuses/{status['id']}").json() == status
    assert client.get(f"/users/{login}/statuses").json()["statuses"] == [status]


def test_a_hydrator_that_raises_is_skipped_and_counted(client, broker, hydrators):
    def broken(status):
        raise RuntimeError("this hydrator fails on purpose")

    hydrators.register("broken", broken)
    hydrators.register("place", lambda status: {"place": "Paris", "message": "never replaced"}
                       if status.get("location") == "48.85,2.35" else None)
    hydrators.register("not-json", lambda status: {"bad": {1, 2}})
    _, token = signup(client)
    stream = HomeStream(client, token)
    before = client.get("/stats").json()["hydrator_errors"]
    status = post(client, token, "still posted", "48.85,2.35")
    assert status["place"] == "Paris" and status["message"] == "still posted" and "bad" not in status
    assert client.get("/stats").json()["hydrator_errors"] == before + 2
    assert "longpoll_hydrator_errors_total" in client.get("/metrics").text
    settle(broker)
    assert stream.drain() == [status]


def test_a_slow_hydrator_is_skipped_and_counted_and_posting_goes_on(client, broker, hydrators):
    release = threading.Event()
    hydrators.register("slow", lambda status: release.wait(30) and {"slow": True}, timeout=0.05)
    try:
        _, token = signup(client)
        stream = HomeStream(client, token)
        before = client.get("/stats").json()["hydrator_timeouts"]
        posted = [post(client, token, f"not waiting {i}") for i in range(6)]  # more than its threads
        assert not any("slow" in status for status in posted)
        assert client.get("/stats").json()["hydrator_timeouts"] == before + 6
        settle(broker)
        assert stream.drain() == posted
    finally:
        release.set()


# -- sessions that move ------------------------------------------------------------


@pytest.fixture
def redis_broker(server):
    if "redis" not in server["brokers"]:
        pytest.skip("needs redis-server")
    return server["brokers"]["redis"]


def home_app(broker: Broker) -> dict:
    """What a server process mounts for the home stream: the routers at its hub, and the endpoint."""
    index = HomeIndex()
    broker.hub.route(TOPIC, SocialRouter(index))
    broker.hub.route(GRAPH, GraphRouter(broker.hub, index))
    store = RedisStore(broker.redis, broker.log)

    @json_yield(name="tests.home")
    def home(uid: str):
        return home_feed(broker, store, lambda: {"identifier": "h", "uid": int(uid), "backfill": 0})

    return {"home": home, "store": store}


def test_a_home_session_rebuilt_in_another_process_routes_as_before(redis_broker):
    """Two processes; the graph changes between their polls."""
    prefix = unique("t") + ":"
    one, two = (Process(redis_broker.backend.url, prefix, home_app) for _ in range(2))
    try:
        store = one["store"]
        ann, bob = store.create_user(unique("ann"), "Ann"), store.create_user(unique("bob"), "Bob")
        store.follow(bob["token"], ann["login"])
        client = Client(one["home"], uid=str(bob["id"]))
        client.poll()
        first = store.post_status(ann["token"], "one", None)
        assert client.take(1) == [first]
        store.unfollow(bob["token"], ann["login"])
        store.post_status(ann["token"], "not for bob", None)
        store.delete_status(ann["token"], first["id"])
        store.follow(bob["token"], ann["login"])
        last = store.post_status(ann["token"], "two", None)
        one.stop()  # this process goes away; the other builds the session again from Redis
        client.target = two["home"]
        assert client.take(2) == [{"id": first["id"], "deleted": True}, last]
    finally:
        one.stop()
        two.stop()


def test_home_polls_alternating_between_two_server_processes(durable_redis):
    with ServerProcess("--redis", durable_redis.url) as one, ServerProcess("--redis", durable_redis.url) as two:
        with httpx.Client(base_url=one.wait_ready(), timeout=30) as a, \
                httpx.Client(base_url=two.wait_ready(), timeout=30) as b:
            authors = [signup(a) for _ in range(3)]
            _, reader = signup(a)
            stream = HomeStream(a, reader)
            expected: list[int] = []
            for i in range(30):
                login, token = authors[i % 3]
                if i % 7 == 0:
                    assert follow(b if i % 2 else a, reader, login).status_code == 200
                if i % 11 == 0:
                    assert unfollow(a if i % 2 else b, reader, login).status_code == 200
                status = post(b if i % 2 else a, token, f"status {i}")
                if a.get(f"/users/{login}").json()["followers"]:  # the reader is the only one who follows
                    expected.append(status["id"])
                stream.client = b if i % 2 else a
                assert stream.poll(timeout=0.2).status_code in (200, 409)
            stream.collect(len(expected), timeout=60, poll_timeout=0.3, clients=[a, b])
            assert stream.ids() == expected and 0 < len(expected) < 30
            resumed = sum(c.get("/stats").json()["sessions_resumed"] for c in (a, b))
            assert resumed >= 10  # the session really moved back and forth


def test_docs_hydrator_example_runs_as_written():
    namespace: dict = {}
    exec(compile(docs_block("streams.md", "<!-- hydrator-example -->"), "docs/streams.md hydrator example", "exec"),
         namespace)
    store, hydrate = namespace["store"], namespace["hydrators"]
    user = store.create_user(unique("placed"), "Placed Person")
    status = store.post_status(user["token"], "bonjour", "48.9,2.4", hydrate)
    assert (status["place"], status["name"]) == ("Paris", "Placed Person")
    assert "place" not in store.post_status(user["token"], "nowhere", "0,0", hydrate)
    assert namespace["streams"].home is not None
