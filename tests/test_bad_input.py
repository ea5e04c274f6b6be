"""Every malformed parameter answers 400 JSON naming it; none answers 500."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

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
    ({"key": "k" * 200, "cursor": "1"}, "key"),
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
