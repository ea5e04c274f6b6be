"""The book's filter semantics, and the indexed router agreeing with them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longpoll.errors import BadParameter
from longpoll.server.streams.filters import (
    FilterLimits,
    Follow,
    Locations,
    Sample,
    parse_filter,
    parse_follow,
    parse_locations,
    parse_sample,
    parse_track,
)
from longpoll.server.streams.router import StatusRouter
from longpoll.subscription import Subscription

LIMITS = FilterLimits()


def status(id=1, message="", login="someone", location=None):
    s = {"id": id, "uid": 1, "login": login, "message": message, "posted": 0.0}
    if location is not None:
        s["location"] = location
    return s


@pytest.mark.parametrize("track,message,matches", [
    ("hello", "Hello world", True),
    ("hello world", "world, hello", False),  # "world," is not the word "world"
    ("hello world", "the world says HELLO", True),  # any order, any case
    ("hello world", "hello there", False),  # every word of the phrase is needed
    ("hello,world", "hello there", True),  # phrases are alternatives
    ("hello", "hello!", False),  # punctuation stays part of the word
    ("  hello   world ", "world hello", True),  # whitespace in a phrase is only a separator
    ("a,,b", "b", True),  # empty phrases are ignored
    ("#redis", "I like #redis", True),
    ("ünïcode", "ÜNÏCODE works", True),
])
def test_track(track, message, matches):
    assert parse_track(track, LIMITS).check(status(message=message)) is matches


@pytest.mark.parametrize("follow,message,login,matches", [
    ("alice", "anything", "alice", True),
    ("alice", "anything", "ALICE", True),
    ("@alice", "anything", "alice", True),  # a leading @ in the follow list is allowed
    ("alice", "hi @alice", "bob", True),  # mentions count
    ("alice", "hi @ALICE", "bob", True),
    ("alice", "hi @alice,", "bob", False),  # "@alice," is not the word "@alice"
    ("alice", "hi alice", "bob", False),  # a mention needs the @
    ("alice,carol", "hi @carol", "bob", True),
    ("alice", "hi @alicex", "bob", False),
])
def test_follow(follow, message, login, matches):
    assert bool(parse_follow(follow, LIMITS).check(status(message=message, login=login))) is matches


BAY_AREA = "-122.75,36.8,-121.75,37.8"


@pytest.mark.parametrize("boxes,location,matches", [
    (BAY_AREA, "37.5,-122.3", True),
    (BAY_AREA, "-122.3,37.5", False),  # a status's location is lat,lon; a box is lon,lat
    (BAY_AREA, "36.8,-122.75", True),  # the south-west corner is inside
    (BAY_AREA, "37.8,-121.75", True),  # so is the north-east one
    (BAY_AREA, "37.81,-122", False),
    (BAY_AREA, None, False),
    (BAY_AREA, "garbage", False),
    (BAY_AREA, "95,0", False),
    (BAY_AREA + ",-74,40,-73,41", "40.7,-73.9", True),  # several boxes: any
    ("-180,-90,180,90", "0,0", True),
])
def test_locations(boxes, location, matches):
    assert parse_locations(boxes, LIMITS).check(status(location=location)) is matches


def test_sample_keeps_percent_of_ids_and_depends_only_on_the_identifier():
    for percent in (1, 10, 33, 100):
        kept = [i for i in range(1, 10_001) if Sample("client-7", percent).check({"id": i})]
        assert len(kept) == 100 * percent
    assert Sample("a", 10).residues == Sample("a", 10).residues
    assert Sample("a", 10).residues != Sample("b", 10).residues
    assert Sample("a", 5).residues <= Sample("a", 50).residues  # the book's shuffle: a prefix


@pytest.mark.parametrize("call,param", [
    (lambda: parse_sample("x", "0"), "percent"),
    (lambda: parse_sample("x", "101"), "percent"),
    (lambda: parse_sample("x", "ten"), "percent"),
    (lambda: parse_sample("x", "5.5"), "percent"),
    (lambda: parse_filter(None, None, None, LIMITS), "track"),
    (lambda: parse_filter("", "", "", LIMITS), "track"),
    (lambda: parse_locations("1,2,3", LIMITS), "locations"),
    (lambda: parse_locations("a,b,c,d", LIMITS), "locations"),
    (lambda: parse_locations("0,-91,1,1", LIMITS), "locations"),
    (lambda: parse_locations("0,0,181,1", LIMITS), "locations"),
    (lambda: parse_locations("10,0,0,1", LIMITS), "locations"),  # west of east: would cross the antimeridian
    (lambda: parse_locations("nan,0,1,1", LIMITS), "locations"),
    (lambda: parse_locations(",".join(["0,0,1,1"] * 26), LIMITS), "locations"),
    (lambda: parse_track(",".join(["w"] * 401), LIMITS), "track"),
    (lambda: parse_track("x" * 61, LIMITS), "track"),
    (lambda: parse_follow("not a login!", LIMITS), "follow"),
    (lambda: parse_follow(",".join(f"u{i}" for i in range(5001)), LIMITS), "follow"),
    (lambda: parse_track({"a": 1}, LIMITS), "track"),
])
def test_bad_filters_name_the_parameter(call, param):
    with pytest.raises(BadParameter) as caught:
        call()
    assert caught.value.param == param


# -- the router agrees with check() ----------------------------------------

WORDS = ["red", "green", "blue", "@ann", "@bo", "cat", "dog", "#x", "red,"]
LOGINS = ["ann", "bo", "cy"]

track_filters = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
                         min_size=1, max_size=3).map(lambda ps: parse_track(",".join(ps), LIMITS))
follow_filters = st.lists(st.sampled_from(LOGINS), min_size=1, max_size=2).map(
    lambda names: Follow(frozenset("@" + n for n in names)))
coords = st.tuples(st.integers(-180, 179), st.integers(-90, 89), st.integers(1, 60), st.integers(1, 40))
location_filters = st.lists(coords, min_size=1, max_size=3).map(
    lambda boxes: Locations([(x, y, min(x + w, 180), min(y + h, 90)) for x, y, w, h in boxes]))
sample_filters = st.tuples(st.sampled_from(["p", "q", "r"]), st.integers(1, 100)).map(lambda a: Sample(*a))
any_filter = st.one_of(track_filters, follow_filters, location_filters, sample_filters)
statuses = st.builds(
    lambda i, words, login, loc: status(i, " ".join(words), login, loc),
    st.integers(1, 10**6), st.lists(st.sampled_from(WORDS + ["RED", "Cat"]), max_size=6), st.sampled_from(LOGINS),
    st.one_of(st.none(), st.tuples(st.floats(-90, 90), st.floats(-180, 180)).map(lambda p: f"{p[0]},{p[1]}")))


@settings(max_examples=300, deadline=None)
@given(st.lists(any_filter, min_size=1, max_size=12), st.lists(statuses, min_size=1, max_size=10), st.data())
def test_router_matches_exactly_what_check_matches(filters, sample_statuses, data):
    router = StatusRouter()
    subs = [Subscription(None, "statuses", f, 10) for f in filters]  # type: ignore[arg-type]
    for sub in subs:
        router.add(sub)
    removed = data.draw(st.sets(st.sampled_from(range(len(subs)))))
    for i in removed:
        router.remove(subs[i])
    live = [sub for i, sub in enumerate(subs) if i not in removed]
    for s in sample_statuses:
        assert set(router.match(s)) == {sub for sub in live if sub.filter.check(s)}
    for sub in live:
        router.remove(sub)
    assert len(router) == 0
    assert not any((router._sample, router._track, router._follow, router._grid))  # no leftovers
