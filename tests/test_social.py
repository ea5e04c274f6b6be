"""The social graph over HTTP, on both backends: follow, profiles, timelines, syndication, limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import cherrypy
import httpx
import pytest

from longpoll import JSON_ERRORS, Broker, Registry
from longpoll.server.streams import StatusStreams
from longpoll.server.streams.redis_store import RedisStore
from longpoll.server.streams.social import SocialLimits
from longpoll.server.streams.store import MemoryStore
from tests.social_helpers import auth, follow, home, profile, store_of, syndicated, unfollow
from tests.streams_helpers import delete, post, signup, unique


@pytest.fixture
def store(backend):
    return store_of(f"/{backend}")


# -- follow and unfollow -------------------------------------------------------


def test_follow_and_unfollow_answer_and_count(client):
    ann, ann_token = signup(client)
    bob, bob_token = signup(client)
    first = follow(client, bob_token, ann)
    assert first.status_code == 200 and first.json() == {"login": ann, "following": True}
    assert follow(client, bob_token, ann.upper()).json() == {"login": ann.upper(), "following": True}  # twice: fine
    profile_of = client.get(f"/users/{ann}").json()
    assert set(profile_of) == {"id", "login", "name", "followers", "following", "posts", "signup"}
    assert (profile_of["login"], profile_of["followers"], profile_of["following"]) == (ann, 1, 0)
    assert client.get(f"/users/{bob}").json()["following"] == 1
    assert [u["login"] for u in client.get(f"/users/{ann}/followers").json()["users"]] == [bob]
    assert [u["login"] for u in client.get(f"/users/{bob}/following").json()["users"]] == [ann]
    gone = unfollow(client, bob_token, ann)
    assert gone.status_code == 200 and gone.json() == {"login": ann, "following": False}
    assert unfollow(client, bob_token, ann).status_code == 200  # not following: still fine
    assert client.get(f"/users/{ann}").json()["followers"] == 0
    assert client.get(f"/users/{ann}/followers").json() == {"users": [], "next": None}


def test_follow_errors(client):
    ann, token = signup(client)
    own = follow(client, token, ann)
    assert own.status_code == 400 and own.json()["param"] == "login"
    assert unfollow(client, token, ann).status_code == 400
    missing = follow(client, token, unique("nobody"))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = client.post(f"/users/{ann}/follow", headers=headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    bad = client.post("/users/no%20spaces/follow", headers=auth(token))
    assert bad.status_code == 400 and bad.json()["param"] == "login"
    wrong = client.get(f"/users/{ann}/follow")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert client.get(f"/users/{ann}/nothing").status_code == 404
    assert client.get(f"/users/{unique('nobody')}").status_code == 404


def test_racing_follows_and_unfollows_keep_counts_exact(client, base):
    target, target_token = signup(client)
    fans = [signup(client) for _ in range(8)]

    def churn(i: int) -> None:
        login, token = fans[i % len(fans)]
        with httpx.Client(base_url=base, timeout=30) as c:
            for n in range(6):
                response = (follow if (n + i) % 2 == 0 else unfollow)(c, token, target)
                assert response.status_code == 200, response.text
                back = (follow if n % 3 else unfollow)(c, target_token, login)  # and the other way round
                assert back.status_code == 200, back.text

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(churn, range(32)))
    followers = client.get(f"/users/{target}/followers", params={"count": 200}).json()["users"]
    following = client.get(f"/users/{target}/following", params={"count": 200}).json()["users"]
    counted = client.get(f"/users/{target}").json()
    assert (counted["followers"], counted["following"]) == (len(followers), len(following))
    assert len({u["id"] for u in followers}) == len(followers)
    for login, _ in fans:  # each side of every pair agrees
        fan = client.get(f"/users/{login}").json()
        listed = client.get(f"/users/{login}/following").json()["users"]
        assert fan["following"] == len(listed) == (login in [u["login"] for u in followers])


def test_logins_that_are_handler_names_are_users_too(client):
    """CherryPy maps /users/index and /users/default to the users node's own handlers."""
    for login in ("index", "default"):
        made = client.post("/users", data={"login": login})
        assert made.status_code in (201, 409)
        assert client.get(f"/users/{login}").json()["login"] == login
        assert client.get(f"/users/{login}/statuses").json()["statuses"] is not None
    _, token = signup(client)
    assert follow(client, token, "index").json() == {"login": "index", "following": True}
    assert unfollow(client, token, "default").json() == {"login": "default", "following": False}
    assert client.get("/users/index/index").status_code == 404


# -- timelines ----------------------------------------------------------------------


def test_follow_copies_recent_statuses_and_unfollow_takes_them_out(client, store):
    ann, ann_token = signup(client)
    bob, bob_token = signup(client)
    posted = [post(client, ann_token, f"before {i}")["id"] for i in range(3)]
    own = post(client, bob_token, "bob's own")["id"]
    assert home(client, bob_token) == [own]  # one's own statuses are in one's home timeline
    assert follow(client, bob_token, ann).status_code == 200
    assert home(client, bob_token) == sorted(posted + [own], reverse=True)
    later = post(client, ann_token, "after")["id"]
    syndicated(store)
    assert home(client, bob_token) == sorted(posted + [own, later], reverse=True)
    assert unfollow(client, bob_token, ann).status_code == 200
    assert home(client, bob_token) == [own]
    assert profile(client, ann) == sorted(posted + [later], reverse=True)


def test_timelines_page_newest_first(client):
    ann, token = signup(client)
    posted = [post(client, token, f"n{i}")["id"] for i in range(7)]
    newest = sorted(posted, reverse=True)
    first = client.get(f"/users/{ann}/statuses", params={"count": 3}).json()
    assert [s["id"] for s in first["statuses"]] == newest[:3] and first["next"] == 2
    assert profile(client, ann, page=2, count=3) == newest[3:6]
    last = client.get(f"/users/{ann}/statuses", params={"page": 3, "count": 3}).json()
    assert [s["id"] for s in last["statuses"]] == newest[6:] and last["next"] is None
    assert profile(client, ann, page=9, count=3) == []
    assert home(client, token, count=2) == newest[:2]
    assert set(client.get(f"/users/{ann}/statuses").json()["statuses"][0]) >= {"id", "uid", "login", "message",
                                                                               "posted"}


def test_followers_page_newest_first_with_a_cursor(client):
    star, _ = signup(client)
    fans = [signup(client) for _ in range(5)]
    for _, token in fans:
        assert follow(client, token, star).status_code == 200
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"count": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/users/{star}/followers", params=params).json()
        seen += [u["login"] for u in page["users"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [login for login, _ in reversed(fans)]


def test_home_timeline_needs_the_token(client):
    assert client.get("/home").status_code == 401
    _, token = signup(client)
    assert client.get("/home/more", headers=auth(token)).status_code == 404
    assert client.post("/home", headers=auth(token)).status_code == 405


@pytest.mark.parametrize("path,params,param", [
    ("/users/{login}/statuses", {"count": "0"}, "count"),
    ("/users/{login}/statuses", {"count": "201"}, "count"),
    ("/users/{login}/statuses", {"page": "0"}, "page"),
    ("/users/{login}/statuses", {"page": "1001"}, "page"),
    ("/users/{login}/statuses", {"page": "x"}, "page"),
    ("/users/{login}/statuses", {"pages": "1"}, "pages"),
    ("/users/{login}/followers", {"count": "-1"}, "count"),
    ("/users/{login}/followers", {"cursor": "abc"}, "cursor"),
    ("/users/{login}/following", {"cursor": "1" * 17}, "cursor"),
    ("/users/{login}", {"extra": "1"}, "extra"),
    ("/home", {"count": "1000"}, "count"),
])
def test_bad_paging_is_400_naming_it(client, path, params, param):
    login, token = signup(client)
    response = client.get(path.format(login=login), params=params, headers=auth(token))
    assert response.status_code == 400, response.text
    assert response.json()["param"] == param and response.json()["error"] == "bad_parameter"


def test_each_post_reaches_every_followers_home_and_each_delete_leaves_them(client, base, store):
    author, token = signup(client)
    fans = [signup(client) for _ in range(6)]
    for _, fan_token in fans:
        follow(client, fan_token, author)
    posted = [post(client, token, f"to all {i}")["id"] for i in range(4)]
    syndicated(store)
    for _, fan_token in fans:
        assert home(client, fan_token) == sorted(posted, reverse=True)
    assert delete(client, token, posted[1]).status_code == 200
    gone = post(client, token, "deleted at once")["id"]
    assert delete(client, token, gone).status_code == 200  # maybe before its syndication ran
    syndicated(store)
    for _, fan_token in fans:
        assert home(client, fan_token) == sorted([posted[0], posted[2], posted[3]], reverse=True)
    assert profile(client, author) == sorted([posted[0], posted[2], posted[3]], reverse=True)


# -- limits, on an app tree of their own with small ones ------------------------------

SMALL = SocialLimits(max_following=3, timeline_size=5, fanout_per_pass=2)


@pytest.fixture(scope="module")
def small(server):
    """Each backend's streams again under /small-<backend> (Redis: database 1), with tiny social limits."""
    for name in server["brokers"]:
        broker = Broker(server["redis"].url.replace("/0", "/1") if name == "redis" else None)
        store = MemoryStore(broker.log, SMALL) if name == "mem" else RedisStore(broker.redis, broker.log, SMALL)
        streams = StatusStreams(broker, store, Registry(name=f"small-{name}"))
        root = SimpleNamespace(users=streams.users, statuses=streams.statuses, home=streams.home)
        cherrypy.tree.mount(root, f"/small-{name}", {"/": {**JSON_ERRORS, "tools.trailing_slash.on": False}})
    return server


def test_limits_the_follow_count_and_the_timelines(small, backend):
    with httpx.Client(base_url=f"{small['url']}/small-{backend}", timeout=30) as c:
        author, token = signup(c)
        others = [signup(c) for _ in range(4)]
        for login, _ in others[:3]:
            assert follow(c, token, login).status_code == 200
        over = follow(c, token, others[3][0])
        assert over.status_code == 400 and over.json()["param"] == "login" and "3" in over.json()["message"]
        assert unfollow(c, token, others[0][0]).status_code == 200
        assert follow(c, token, others[3][0]).status_code == 200  # room again
        fans = [signup(c) for _ in range(5)]  # five followers: three passes of two
        for _, fan_token in fans:
            follow(c, fan_token, author)
        posted = [post(c, token, f"m{i}")["id"] for i in range(7)]
        syndicated(store_of(f"/small-{backend}"))
        assert profile(c, author, count=200) == sorted(posted, reverse=True)[:5]
        for _, fan_token in fans:
            assert home(c, fan_token, count=200) == sorted(posted, reverse=True)[:5]
        too_far = c.get(f"/users/{author}/statuses", params={"page": 6})
        assert too_far.status_code == 400 and too_far.json()["param"] == "page"
