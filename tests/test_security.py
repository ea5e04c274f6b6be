"""Security promises of SECURITY.md that the other tests do not already hold."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.procs import ServerProcess
from tests.streams_helpers import Stream, signup


def test_tokens_are_stored_only_as_digests(client, broker, backend):
    login, token = signup(client)
    digest = hashlib.sha256(token.encode()).hexdigest()
    if backend == "redis":
        stored = b"".join(k + b"=" + v for key in broker.redis.scan_iter("*") if broker.redis.type(key) == b"hash"
                          for k, v in broker.redis.hgetall(key).items())
        stored += b"".join(broker.redis.scan_iter("*"))
    else:
        store = next(s for s in _stores(broker))
        stored = repr((store._users, store._tokens)).encode()
    assert token.encode() not in stored
    assert digest.encode() in stored


def _stores(broker):
    import gc

    from longpoll.server.streams.store import MemoryStore

    return [o for o in gc.get_objects() if isinstance(o, MemoryStore) and o.log is broker.log]


def test_a_made_up_key_never_becomes_a_session(client):
    made_up = "A" * 24
    response = client.get("/statuses/sample.json", params={"identifier": "x", "key": made_up, "cursor": "0"})
    assert response.status_code == 410
    again = client.get("/statuses/sample.json", params={"identifier": "x", "key": made_up, "cursor": "0"})
    assert again.status_code == 410


def test_another_users_token_cannot_delete(client):
    _, owner = signup(client)
    _, other = signup(client)
    status = client.post("/statuses", data={"message": "mine"}, headers={"Authorization": f"Bearer {owner}"}).json()
    refused = client.delete(f"/statuses/{status['id']}", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403
    assert client.get(f"/statuses/{status['id']}").status_code == 200


def test_cors_is_closed_by_default(client):
    answer = client.get("/primes", params={"limit": 10}, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers
    preflight = client.options("/statuses", headers={"Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 405 and "Access-Control-Allow-Origin" not in preflight.headers


@pytest.fixture(scope="module")
def cors_server():
    with ServerProcess("--cors-origin", "https://app.example") as server:
        yield server.wait_ready()


def test_cors_opens_only_to_listed_origins(cors_server):
    with httpx.Client(base_url=cors_server, timeout=10) as c:
        allowed = c.get("/primes", params={"limit": 10}, headers={"Origin": "https://app.example"})
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Retry-After" in allowed.headers["Access-Control-Expose-Headers"]
        other = c.get("/primes", params={"limit": 10}, headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        preflight = c.options("/statuses", headers={"Origin": "https://app.example",
                                                    "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 204
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        refused = c.options("/statuses", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers


def test_stream_key_is_bound_to_its_identifier_across_endpoints(client):
    stream = Stream(client, "sample", identifier="alice-1")
    stolen = client.post("/statuses/filter.json", data={"identifier": "alice-1", "key": stream.key,
                                                        "cursor": stream.cursor, "track": "x"})
    assert stolen.status_code == 403  # a sample key is no filter key, even for its own identifier
    assert "another endpoint" in stolen.json()["message"]
