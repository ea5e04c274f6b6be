"""The status streams over HTTP, on both backends: publishing, filters, deletion, limits."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from longpoll.server.streams.filters import Sample
from longpoll.server.streams.store import TOPIC
from tests.streams_helpers import Stream, delete, post, settle, signup, unique

# -- users and statuses ------------------------------------------------------


def test_signup_returns_a_token_once_and_logins_are_case_insensitive(client):
    login = unique("Ann")
    response = client.post("/users", data={"login": login, "name": "Ann Example"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "login", "token"} and body["login"] == login and len(body["token"]) >= 40
    again = client.post("/users", json={"login": login.upper()})
    assert again.status_code == 409 and again.json()["error"] == "conflict"


@pytest.mark.parametrize("data,param", [({}, "login"), ({"login": "has space"}, "login"),
                                        ({"login": "x" * 33}, "login"), ({"login": "ok", "extra": "1"}, "extra"),
                                        ({"login": "ok2", "name": "n" * 101}, "name")])
def test_bad_signup_is_400(client, data, param):
    response = client.post("/users", data=data)
    assert response.status_code == 400 and response.json()["param"] == param


def test_racing_signups_for_one_login_make_exactly_one_user(client, base):
    login = unique("race")

    def attempt(i: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as c:
            return c.post("/users", data={"login": login if i % 2 else login.upper()}).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, range(40)))
    assert codes.count(201) == 1 and codes.count(409) == 39


def test_post_get_and_delete_a_status(client):
    login, token = signup(client)
    status = post(client, token, "hello there", "37.5,-122.3")
    assert status["login"] == login and status["message"] == "hello there" and status["location"] == "37.5,-122.3"
    assert isinstance(status["id"], int) and isinstance(status["posted"], float)
    assert client.get(f"/statuses/{status['id']}").json() == status
    _, other = signup(client)
    forbidden = delete(client, other, status["id"])
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    gone = delete(client, token, status["id"])
    assert gone.status_code == 200 and gone.json() == {"id": status["id"], "deleted": True}
    assert client.get(f"/statuses/{status['id']}").status_code == 404
    assert delete(client, token, status["id"]).status_code == 404


def test_racing_deletes_of_one_status_succeed_once(client, base):
    _, token = signup(client)
    status = post(client, token, "delete me twice")

    def attempt(_: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as c:
            return delete(c, token, status["id"]).status_code

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(attempt, range(20)))
    assert codes.count(200) == 1 and codes.count(404) == 19


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"}])
def test_posting_needs_a_valid_token(client, headers):
    response = client.post("/statuses", data={"message": "hi"}, headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("data,param", [({}, "message"), ({"message": ""}, "message"),
                                        ({"message": "m" * 1001}, "message"),
                                        ({"message": "hi", "location": "north"}, "location"),
                                        ({"message": "hi", "location": "91,0"}, "location"),
                                        ({"message": "hi", "location": "1,2,3"}, "location")])
def test_bad_status_is_400(client, data, param):
    _, token = signup(client)
    response = client.post("/statuses", data=data, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.json()["param"] == param


@pytest.mark.parametrize("how", ["form", "json", "query", "multipart"])
def test_a_status_posts_alike_in_every_body_shape_on_every_front(client, server, front, how):
    """POST /statuses is answered by the front itself (FastPolls, longpoll.asgi) with the same answer as
    CherryPy's handler: a form, a JSON object, the query string; a multipart body is left to CherryPy."""
    login, token = signup(client)
    auth = {"Authorization": f"Bearer {token}"}
    fields = {"message": f"via {how}", "location": "1.5,2.5"}
    before = server["fast"].answered
    if how == "form":
        response = client.post("/statuses", data=fields, headers=auth)
    elif how == "json":
        response = client.post("/statuses", json=fields, headers=auth)
    elif how == "query":
        response = client.post("/statuses", params=fields, headers=auth)
    else:
        response = client.post("/statuses", files={name: (None, value) for name, value in fields.items()},
                               headers=auth)
    assert response.status_code == 201, response.text
    status = response.json()
    assert status["login"] == login and status["message"] == f"via {how}" and status["location"] == "1.5,2.5"
    assert client.get(f"/statuses/{status['id']}").json() == status
    on_front = front == "fastpath" and how != "multipart"
    assert server["fast"].answered == before + on_front
    both = client.post("/statuses", params={"message": "a"}, json={"message": "b"}, headers=auth)
    assert both.status_code == 400 and both.json()["param"] == "message"  # given twice: refused, not merged


def test_a_burst_of_posts_by_many_users_takes_distinct_ids_each_its_author(client, base):
    """On an event loop the posts of one moment go to the store together (one pipeline on Redis), ids
    taken in one step: each answer is its own post's, with an id no other took."""
    users = [signup(client) for _ in range(8)]

    def attempt(n: int) -> tuple[str, str, httpx.Response]:
        login, token = users[n % len(users)]
        with httpx.Client(base_url=base, timeout=30) as c:
            return login, f"burst {n}", c.post("/statuses", data={"message": f"burst {n}"},
                                               headers={"Authorization": f"Bearer {token}"})

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(attempt, range(160)))
    assert all(r.status_code == 201 for _, _, r in answers), [r.text for _, _, r in answers if r.status_code != 201]
    ids = [r.json()["id"] for _, _, r in answers]
    assert len(set(ids)) == len(ids)
    for login, message, r in answers:
        assert r.json()["login"] == login and r.json()["message"] == message
        assert client.get(f"/statuses/{r.json()['id']}").json() == r.json()


@pytest.mark.parametrize("path", ["/statuses/abc", "/statuses/1.5", "/statuses/99999999999", "/statuses/1/2"])
def test_unknown_status_is_404(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize("method,path", [("GET", "/users"), ("GET", "/statuses"), ("PUT", "/statuses/1"),
                                         ("POST", "/statuses/sample.json"), ("PUT", "/statuses/filter.json")])
def test_wrong_methods_are_405(client, method, path):
    response = client.request(method, path, params={"identifier": "x"})
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


# -- the long-polls ----------------------------------------------------------


def test_each_filter_gets_its_matches_and_nothing_else(client, broker):
    author, token = signup(client)
    word = unique("w")
    streams = {
        "track": Stream(client, "filter", track=f"{word} alpha,{word}-solo"),
        "follow": Stream(client, "filter", follow=author),
        "locations": Stream(client, "filter", locations="-10,-10,10,10"),
        "location-alias": Stream(client, "filter", location="-10,-10,10,10"),
        "combined": Stream(client, "filter", track=f"{word}-solo", locations="100,-10,110,10"),
    }
    posted = {
        "both-words": post(client, token, f"ALPHA and {word}"),
        "one-word": post(client, token, f"{word} beta"),
        "solo": post(client, token, f"just {word}-solo here"),
        "inside": post(client, token, "somewhere", "5,5"),
        "east": post(client, token, "far east", "0,105"),
    }
    _, other = signup(client)
    posted["mention"] = post(client, other, f"hey @{author}")
    posted["not-mention"] = post(client, other, f"hey {author}")
    posted["outside"] = post(client, other, "nowhere", "50,50")
    settle(broker)
    got = {name: set(stream.drain() and stream.ids()) for name, stream in streams.items()}
    ids = {name: s["id"] for name, s in posted.items()}
    assert got["track"] == {ids["both-words"], ids["solo"]}
    assert got["follow"] == {ids["both-words"], ids["one-word"], ids["solo"], ids["inside"], ids["east"],
                             ids["mention"]}
    assert got["locations"] == got["location-alias"] == {ids["inside"]}
    assert got["combined"] == {ids["solo"], ids["east"]}


def test_sample_delivers_exactly_its_residues(client, broker):
    _, token = signup(client)
    identifier = unique("sampler")
    stream = Stream(client, "sample", identifier=identifier, percent=10)
    posted = [post(client, token, f"n{i}")["id"] for i in range(200)]
    settle(broker)
    stream.drain()
    expected = [i for i in posted if Sample(identifier, 10).check({"id": i})]
    assert stream.ids() == expected
    assert len(expected) == 20  # 200 consecutive ids cover each residue twice


def test_deletion_reaches_only_the_sessions_that_matched(client, broker):
    _, token = signup(client)
    apple, banana = unique("apple"), unique("banana")
    fruit = Stream(client, "filter", track=apple)
    other = Stream(client, "filter", track=banana)
    status = post(client, token, f"{apple} pie")
    assert delete(client, token, status["id"]).status_code == 200
    settle(broker)
    assert fruit.drain() == [status, {"id": status["id"], "deleted": True}]
    assert other.drain() == []


def test_a_held_poll_is_released_by_a_matching_post(client, base):
    _, token = signup(client)
    word = unique("now")
    stream = Stream(client, "filter", track=word)
    result: dict = {}

    def hold():
        with httpx.Client(base_url=base, timeout=60) as c:
            stream.client = c
            result["response"] = stream.poll(timeout=30)

    waiter = threading.Thread(target=hold)
    waiter.start()
    status = post(client, token, f"{word}!")  # not a match: "now…!" keeps its "!"
    match = post(client, token, f"it is {word}")
    waiter.join(timeout=25)
    assert not waiter.is_alive()
    assert result["response"].status_code == 200
    assert status["id"] not in stream.ids() and stream.ids() == [match["id"]]


def test_identifier_is_required_and_bound_to_the_session(client):
    missing = client.get("/statuses/sample.json")
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    stream = Stream(client, "sample", identifier="owner")
    other = client.get("/statuses/sample.json", params={"identifier": "thief", "key": stream.key,
                                                        "cursor": stream.cursor})
    assert other.status_code == 403
    later_missing = client.get("/statuses/sample.json", params={"key": stream.key, "cursor": stream.cursor})
    assert later_missing.status_code == 401
    assert stream.poll().status_code == 200


@pytest.mark.parametrize("kind,params,param", [
    ("sample", {"identifier": "bad id!"}, "identifier"),
    ("sample", {"identifier": "x" * 65}, "identifier"),
    ("sample", {"identifier": "ok", "percent": "0"}, "percent"),
    ("sample", {"identifier": "ok", "percent": "x"}, "percent"),
    ("sample", {"identifier": "ok", "track": "x"}, "track"),
    ("filter", {"identifier": "ok"}, "track"),
    ("filter", {"identifier": "ok", "locations": "1,2,3"}, "locations"),
    ("filter", {"identifier": "ok", "location": "0,95,1,96"}, "location"),
    ("filter", {"identifier": "ok", "locations": "0,0,1,1", "location": "0,0,1,1"}, "location"),
    ("filter", {"identifier": "ok", "track": ",".join(f"w{i}" for i in range(401))}, "track"),
    ("filter", {"identifier": "ok", "follow": "no spaces allowed"}, "follow"),
    ("filter", {"identifier": "ok", "track": "x", "delimited": "length"}, "delimited"),
])
def test_bad_stream_parameters_are_400(client, kind, params, param):
    if kind == "sample":
        response = client.get("/statuses/sample.json", params=params)
    else:
        response = client.post("/statuses/filter.json", data=params)
    assert response.status_code == 400, response.text
    assert response.json()["param"] == param


def test_filter_accepts_a_json_body_with_lists(client, broker):
    _, token = signup(client)
    word = unique("json")
    response = client.post("/statuses/filter.json", json={"identifier": "j", "track": [word, "nothing at all"],
                                                          "timeout": 0})
    assert response.status_code == 200
    body = response.json()
    status = post(client, token, word)
    settle(broker)
    again = client.post("/statuses/filter.json", json={"identifier": "j", "key": body["key"],
                                                       "cursor": body["cursor"], "timeout": 5})
    assert again.json()["items"] == [status]


def test_a_slow_session_drops_the_oldest_and_is_told(client, broker, server):
    stream = Stream(client, "sample", identifier=unique("slow"), percent=100)
    sub = next(s for s in broker.hub._routers[TOPIC].members()
               if getattr(s.filter, "identifier", None) == stream.identifier)
    sub.maxlen = 5  # a tiny buffer for this one session
    _, token = signup(client)
    posted = [post(client, token, f"m{i}")["id"] for i in range(8)]
    settle(broker)
    dropped_before = client.get("/stats").json()["items_dropped"]
    assert stream.poll(0).status_code == 200
    assert stream.ids() == posted[-5:]  # the newest five survive
    assert stream.dropped == 3
    assert dropped_before >= 3


def test_malformed_entries_are_skipped_and_counted(client, broker):
    _, token = signup(client)
    stream = Stream(client, "sample", identifier=unique("robust"), percent=100)
    before = client.get("/stats").json()["entries_malformed"]
    broker.publish(TOPIC, {"id": "not a number", "message": "x", "login": "y"})
    broker.publish(TOPIC, ["not", "an", "object"])
    broker.publish(TOPIC, {"id": 5, "message": 12, "login": "y"})
    if broker.redis is not None:
        broker.redis.xadd(broker.log.stream, {"t": TOPIC, "d": b"{not json"})
        broker.redis.xadd(broker.log.stream, {"nothing": "useful"})
    good = post(client, token, "still flowing")
    settle(broker)
    assert stream.drain() == [good]
    after = client.get("/stats").json()["entries_malformed"]
    assert after - before >= (5 if broker.redis is not None else 3)


def test_stats_and_metrics_count_the_streams(client, broker):
    _, token = signup(client)
    stream = Stream(client, "sample", identifier=unique("counted"), percent=100)
    post(client, token, "count me")
    settle(broker)
    stream.drain()
    stats = client.get("/stats").json()
    for name in ("sessions", "polls", "items_delivered", "items_dropped", "sessions_expired"):
        assert isinstance(stats[name], int), name
    assert stats["items_delivered"] >= 1 and stats["sessions"] >= 1
    metrics = client.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert "longpoll_items_delivered_total" in metrics.text
    assert client.get("/healthz").json() == {"status": "ok"}


def test_status_ids_in_posts_are_increasing(client):
    _, token = signup(client)
    ids = [post(client, token, str(uuid.uuid4()))["id"] for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_posted_is_a_float_even_on_a_whole_second(client, broker, monkeypatch):
    import types

    clock = types.SimpleNamespace(time=lambda: 1_800_000_000.0)
    monkeypatch.setattr("longpoll.server.streams.redis_store.time", clock)
    monkeypatch.setattr("longpoll.server.streams.store.time", clock)
    stream = Stream(client, "filter", track="wholesecond")
    _, token = signup(client)
    posted = post(client, token, "wholesecond status")
    settle(broker)
    stream.drain()
    delivered = [item for item in stream.items if item["id"] == posted["id"]]
    assert delivered and type(delivered[0]["posted"]) is float and type(posted["posted"]) is float
    assert type(client.get(f"/statuses/{posted['id']}").json()["posted"]) is float
