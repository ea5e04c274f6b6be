"""Property tests of parameter parsing: any input is either accepted within its
documented range or refused with a LongPollError naming a parameter; never a
crash (which would be a 500)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from longpoll.errors import BadParameter, LongPollError
from longpoll.params import KEY, PollLimits, identifier, poll_params
from longpoll.server.streams.filters import FilterLimits, parse_filter, parse_sample

LIMITS = PollLimits()
values = st.one_of(
    st.none(), st.text(max_size=40), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.sampled_from(["", "0", "-1", "60", "60.0001", "1e3", "nan", "inf", " 5 ", "1_0", "٣", "0x10", "1000", "1001"]),
    st.lists(st.one_of(st.text(max_size=10), st.integers(), st.floats()), max_size=5),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
poll_names = st.sampled_from(["key", "cursor", "timeout", "max", "other"])


@settings(max_examples=2000, deadline=None)
@given(st.dictionaries(poll_names, values, max_size=5))
def test_poll_params_accept_in_range_or_name_the_bad_one(raw):
    params = dict(raw)
    try:
        parsed = poll_params(params, LIMITS)
    except BadParameter as exc:
        assert exc.param in raw or exc.param == "cursor"
        return
    assert 0 <= parsed.timeout <= LIMITS.max_timeout and math.isfinite(parsed.timeout)
    assert 1 <= parsed.max_items <= LIMITS.max_max and isinstance(parsed.max_items, int)
    assert parsed.key is None or KEY.fullmatch(parsed.key)
    assert (parsed.key is None) == (parsed.cursor is None)
    assert set(params) == set(raw) - {"key", "cursor", "timeout", "max"}  # only the handler's own are left


@settings(max_examples=2000, deadline=None)
@given(values, values)
def test_sample_and_identifier_parsing_never_crash(ident, percent):
    try:
        name = identifier({"identifier": ident})
        sample = parse_sample(name, percent)
    except LongPollError as exc:
        assert exc.status in (400, 401)
        return
    assert 1 <= sample.percent <= 100 and len(sample.residues) == sample.percent


@settings(max_examples=2000, deadline=None)
@given(values, values, values)
def test_filter_parsing_never_crashes(track, follow, locations):
    try:
        flt = parse_filter(track, follow, locations, FilterLimits())
    except BadParameter as exc:
        assert exc.param in ("track", "follow", "locations")
        return
    status = {"id": 1, "uid": 1, "login": "x", "message": "a b c", "location": "0,0"}
    assert flt.check(status) in (True, False)
