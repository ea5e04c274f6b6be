"""Every malformed parameter answers 400 JSON naming it; none answers 500."""

from __future__ import annotations

import json
import socket

import httpx
import orjson
import pytest

import longpoll

BAD_POLL_PARAMS = [
    ({"timeout": "-1"}, "timeout"),
    ({"timeout": "61"}, "timeout"),
    ({"timeout": "abc"}, "timeout"),
    ({"timeout": "nan"}, "timeout"),
    ({"timeout": "inf"}, "timeout"),
    ({"timeout": "1e400"}, "timeout"),
    ({"timeout": "٣"}, "timeout"),
    ({"max": "0"}, "max"),
    ({"max": "1001"}, "max"),
    ({"max": "1.5"}, "max"),
    ({"max": "ten"}, "max"),
    ({"max": "9" * 5000}, "max"),
    ({"key": "not a key!"}, "key"),
    ({"key": "k" * 300, "cursor": "1"}, "key"),  # keys.MAX_KEY_CHARS is 256
    ({"key": "A" * 24}, "cursor"),
    ({"key": "A" * 24, "cursor": "<script>"}, "cursor"),
    ({"limit": "x"}, "limit"),
    ({"limit": "1"}, "limit"),
    ({"nonsense": "1"}, "nonsense"),
]


@pytest.mark.parametrize("params,name", BAD_POLL_PARAMS)
def test_bad_parameter_is_400_naming_it(client, params, name):
    response = client.get("/primes", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "bad_parameter"
    assert body["param"] == name
    assert name in body["message"]


def test_repeated_parameter_is_400(client):
    response = client.get("/primes?timeout=1&timeout=2")
    assert response.status_code == 400 and response.json()["param"] == "timeout"


def test_parameter_in_query_and_json_body_is_400(client):
    response = client.post("/primes?max=3", json={"max": 4})
    assert response.status_code == 400 and response.json()["param"] == "max"


def test_json_body_parameters_are_read(client):
    body = client.post("/primes", json={"max": 3, "limit": 50, "timeout": 0}).json()
    assert body["items"] == [2, 3, 5]


@pytest.mark.parametrize("payload", [b"[1,2]", b"{not json", b'"text"', b'{"max": {"a": 1}}', b'{"max": true}'])
def test_bad_json_body_is_400(client, payload):
    response = client.post("/primes", content=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("bad_request", "bad_parameter")


def test_over_long_parameter_is_400(client):
    response = client.get("/primes", params={"limit": "1" * 9000})
    assert response.status_code == 400 and response.json()["param"] == "limit"


def test_over_large_body_is_413_json(client):
    response = client.post("/primes", content=b'{"limit": "' + b"1" * 70_000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_post_without_length_has_an_empty_body(base):
    url = httpx.URL(base)
    with socket.create_connection((url.host, url.port), timeout=10) as conn:
        conn.sendall(f"POST {url.path}/primes?limit=10 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Connection: close\r\n\r\n".encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head  # RFC 9112: no length, no body; not CherryPy's 411
    assert json.loads(body)["items"] == [2, 3, 5, 7]


def test_empty_key_and_cursor_mean_a_new_session(client):
    body = client.get("/primes", params={"key": "", "cursor": "", "limit": 10}).json()
    assert body["items"] == [2, 3, 5, 7] and len(body["key"]) >= 22


def test_jquery_cache_buster_is_ignored(client):
    assert client.get("/primes", params={"limit": 10, "_": "1700000000000"}).status_code == 200


def test_publish_needs_a_json_body(client):
    response = client.post("/topics/t", content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    response = client.post("/topics/t", content=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/topics/", "/topics/" + "x" * 65, "/topics/a%20b", "/topics/a/b"])
def test_bad_topic_name_is_400(client, path):
    response = client.get(path)
    assert response.status_code == 400 and response.json()["param"] == "topic"


def test_a_json_body_with_a_name_twice_is_400(client):
    response = client.post("/primes", content=b'{"timeout": 0, "timeout": 1}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["param"] == "timeout"


@pytest.mark.parametrize("query", ["limit=%ff%fe", "identifier=%c3%28"])
def test_a_query_string_that_is_not_utf8_is_400_not_404(base, query):
    with httpx.Client(timeout=10) as raw:  # sent as-is: httpx would re-encode a str
        response = raw.get(httpx.URL(f"{base}/statuses/sample.json?{query}"))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"


@pytest.mark.parametrize("value", ["1_0", "١٢", "\t10", "10\t", "1e2_0", "５"])
def test_numbers_are_ascii_digits_only(client, value):
    sample = client.get("/statuses/sample.json", params={"identifier": "n", "percent": value, "timeout": 0})
    assert sample.status_code == 400 and sample.json()["param"] == "percent", sample.text
    boxes = client.post("/statuses/filter.json",
                        data={"identifier": "n", "locations": f"{value},0,20,20", "timeout": 0})
    assert boxes.status_code == 400 and boxes.json()["param"] == "locations", boxes.text
    timeout = client.get("/primes", params={"timeout": value})
    assert timeout.status_code == 400 and timeout.json()["param"] == "timeout", timeout.text


def test_a_location_given_as_a_json_list_is_told_so(client):
    from tests.streams_helpers import signup

    _, token = signup(client)
    response = client.post("/statuses", json={"message": "hi", "location": [1, 2]},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert response.json()["param"] == "location" and "more than once" not in response.json()["message"]


def test_a_topic_item_over_its_size_is_413_and_nothing_is_kept(client):
    big = {"x": "y" * 9000}
    response = client.post("/topics/big-items", json=big)
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert client.post("/topics/big-items", json={"x": "y" * 8000}).status_code == 201


def test_the_embedded_log_is_bounded_in_bytes_whatever_its_entry_count():
    from longpoll.backends.memory import MemoryLog

    log = MemoryLog(retention=100_000, log_retention=100_000, max_bytes=100_000)
    for n in range(1000):
        log.append("t", {"n": n, "pad": "x" * 1000})
    kept = log.read("0", 0, 100_000)
    assert log.topic_range(("t",), "0", log.tail(), 100_000) == kept  # the topic's history is within it
    assert sum(len(entry.raw) for entry in kept) <= 100_000
    assert [orjson.loads(e.raw)["n"] for e in kept][-1] == 999  # the newest are the ones kept


def test_the_redis_log_of_topics_is_bounded(server):
    if "redis" not in server["brokers"]:
        pytest.skip("needs redis-server")
    from longpoll import Broker
    from tests.streams_helpers import unique

    prefix = unique("bounded-") + ":"
    broker = Broker(server["redis"].url, prefix=prefix, retention=50, log_retention=100, max_item_bytes=100)
    for n in range(1000):
        broker.publish("t", {"n": n})
    assert broker.redis.xlen(broker.log.stream) <= 300  # MAXLEN ~ trims whole macro nodes
    assert broker.redis.xlen(broker.log.topic_stream("t")) <= 250
    with pytest.raises(longpoll.PayloadTooLarge):
        broker.publish("t", {"pad": "x" * 200})
    broker.redis.delete(broker.log.stream, broker.log.topic_stream("t"))


def test_primes_keeps_a_constant_state_however_far_it_goes():
    """Its cost per poll was the primes found so far (1.4 s of CPU at poll 35 of limit 10,000,000)."""
    import itertools
    import tracemalloc

    from longpoll.server.demo import primes

    def held_by_demo() -> int:  # what lines of demo.py allocated and still hold (other threads run too)
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/server/demo.py")])
        return sum(stat.size for stat in snapshot.statistics("filename"))

    tracemalloc.start()
    try:
        session = primes("10000000")
        list(itertools.islice(session, 1000))
        early = held_by_demo()
        list(itertools.islice(session, 100_000))
        late = held_by_demo()
    finally:
        tracemalloc.stop()
    assert late - early < 100_000  # the trial-division version kept 100,000 ints: 3.6 MB


def test_a_parameter_the_path_gives_is_400_naming_it_not_a_500(client):
    """GET /topics/<name>?topic=x called the generator with topic twice: a 500.  (A later poll's parameters
    other than key, cursor, timeout and max are not the generator's, and are ignored as ever.)"""
    refused = client.get("/topics/news", params={"topic": "x", "timeout": 0})
    assert refused.status_code == 400, refused.text
    assert refused.json()["param"] == "topic"


def test_both_fronts_split_parameters_on_semicolons_as_cherrypy_does(client):
    first = client.get("/primes", params={"limit": 50, "max": 2, "timeout": 0}).json()
    answer = client.get(f"/primes?key={first['key']};cursor={first['cursor']}&max=2&timeout=0")
    assert answer.status_code == 200 and answer.json()["items"] == [5, 7]


def test_a_form_body_that_is_not_utf8_is_400_on_both_fronts(client):
    first = client.get("/primes", params={"limit": 50, "timeout": 0}).json()
    body = f"key={first['key']}&cursor={first['cursor']}&x=\xe9".encode("latin-1")
    refused = client.post("/primes", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 400 and refused.json()["error"] in ("bad_request", "bad_parameter"), refused.text
