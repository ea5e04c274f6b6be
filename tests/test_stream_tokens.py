"""Stream tokens (longpoll/server/streams/stream_tokens.py): issued to a bearer by POST /home/stream-tokens, good in
the query string of /statuses/home.json only, for that user only, until they expire. Over real HTTP on both
backends and both fronts, and across two server processes on one Redis."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis

from longpoll.server.streams.stream_tokens import StreamTokens
from tests.procs import ServerProcess
from tests.social_helpers import HomeStream, auth, follow
from tests.streams_helpers import Stream, post, settle, signup, unique
from tests.test_transports import SSE, Reader

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


def issue(client: httpx.Client, token: str, **params: Any) -> dict[str, Any]:
    response = client.post("/home/stream-tokens", data=params, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return response.json()


class TokenStream(Stream):
    """A home-stream session polled as EventSource would ask: the stream token in the query, no header."""

    def __init__(self, client: httpx.Client, stream_token: str, identifier: str | None = None, **params: Any):
        self.stream_token = stream_token
        super().__init__(client, "home", identifier, **params)

    def _request(self, params: dict[str, Any]) -> httpx.Response:
        return self.client.get("/statuses/home.json", params={"identifier": self.identifier,
                                                              "stream_token": self.stream_token, **params})


def refused(response: httpx.Response, status: int = 401, error: str = "unauthorized") -> bool:
    body = response.json()
    return (response.status_code, response.headers["Content-Type"], body["error"], body.get("param")) == \
        (status, "application/json", error, "stream_token")


def home_sse(stream_token: str, identifier: str) -> str:
    return f"/statuses/home.json?identifier={identifier}&stream_token={stream_token}"


def test_a_stream_token_reads_its_users_home_stream(client, broker):
    ann, ann_token = signup(client)
    _, bob_token = signup(client)
    _, cy_token = signup(client)
    follow(client, bob_token, ann)
    issued = issue(client, bob_token)
    assert set(issued) == {"token", "expires", "expires_in"} and issued["expires_in"] == 600
    assert abs(issued["expires"] - (time.time() + 600)) < 5
    stream = TokenStream(client, issued["token"])
    wanted = [post(client, ann_token, "from ann"), post(client, bob_token, "from bob")]
    post(client, cy_token, "from cy, whom bob does not follow")
    settle(broker)
    assert stream.drain() == wanted


def test_a_stream_token_streams_and_the_same_url_resumes_with_last_event_id(client, broker):
    """What EventSource does after the server ends a stream: the same URL (token included), Last-Event-ID."""
    ann, ann_token = signup(client)
    _, bob_token = signup(client)
    follow(client, bob_token, ann)
    url = home_sse(issue(client, bob_token)["token"], unique("h"))
    first = Reader(client, "GET", url, SSE)
    first.wait_for(lambda r: r.frames)
    one = post(client, ann_token, "one")
    first.wait_for(lambda r: r.items() == [one])
    last = first.frames[-1]["id"]
    two = post(client, ann_token, "two")
    settle(broker)
    again = Reader(client, "GET", url, {**SSE, "Last-Event-ID": last})
    again.wait_for(lambda r: r.items() == [two])  # from where the first left off: nothing lost, nothing twice
    assert again.frames[0]["id"].split(".")[0] == last.split(".")[0]  # the same session


def test_a_session_is_its_users_whichever_of_their_tokens_reads_it(client):
    _, ann_token = signup(client)
    _, bob_token = signup(client)
    polled = HomeStream(client, bob_token)
    params = {"identifier": polled.identifier, "key": polled.key, "cursor": polled.cursor, "timeout": 0}
    path = "/statuses/home.json"
    assert client.get(path, params={**params, "stream_token": issue(client, bob_token)["token"]}).status_code == 200
    response = client.get(path, params={**params, "stream_token": issue(client, ann_token)["token"]})
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    streamed = TokenStream(client, issue(client, bob_token)["token"])
    params = {"identifier": streamed.identifier, "key": streamed.key, "cursor": streamed.cursor, "timeout": 0}
    assert client.get(path, params=params, headers=auth(bob_token)).status_code == 200
    assert client.get(path, params=params, headers=auth(ann_token)).status_code == 403


def test_a_stream_token_authenticates_nothing_but_the_home_stream(client):
    login, token = signup(client)
    _, other = signup(client)
    stream_token = issue(client, token)["token"]
    as_bearer = auth(stream_token)
    for method, path in [("GET", "/home"), ("POST", "/home/stream-tokens"), ("GET", "/statuses/home.json"),
                         ("POST", f"/users/{signup(client)[0]}/follow"), ("DELETE", "/statuses/1")]:
        response = client.request(method, path, params={"identifier": "x"} if "json" in path else None,
                                  headers=as_bearer)
        assert response.status_code == 401, (method, path, response.text)
    assert client.post("/statuses", data={"message": "not with a stream token"}, headers=as_bearer).status_code == 401
    response = client.get("/statuses/home.json", params={"identifier": "x", "stream_token": token})
    assert refused(response), response.text  # the API token itself never goes in a URL
    assert client.get(f"/users/{login}").json()["posts"] == 0
    assert refused(client.get("/statuses/home.json", params={"identifier": "x", "stream_token": other}))


def test_forged_and_malformed_stream_tokens_are_json_401s(client, backend):
    _, token = signup(client)
    _, other = signup(client)
    good = issue(client, token)["token"]
    uid, expires, signature = good.split(".")
    other_uid = issue(client, other)["token"].split(".")[0]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forged = [f"{other_uid}.{expires}.{signature}",          # another user, this signature
              f"{uid}.{int(expires) + 3600}.{signature}",    # a later expiry
              f"{uid}.{expires}.{flipped}",                  # a signature off by a character
              StreamTokens().issue(int(uid))["token"],       # well made, with a secret this server does not have
              f"{uid}.{expires}", "garbage", "", f"{good}.", f" {good}"]
    for bad in forged:
        params = {"identifier": "x", "stream_token": bad}
        assert refused(client.get("/statuses/home.json", params=params)), bad
        assert refused(client.get("/statuses/home.json", params=params, headers=SSE)), bad  # never a stream
    params = {"identifier": "x", "stream_token": good, "timeout": 0}
    assert client.get("/statuses/home.json", params=params).status_code == 200
    repeated = client.get("/statuses/home.json", params=[("identifier", "x"), ("stream_token", good),
                                                           ("stream_token", good)])
    assert repeated.status_code == 400 and repeated.json()["param"] == "stream_token"


def test_an_expired_stream_token_is_refused_and_a_fresh_one_resumes_the_session(client, broker):
    ann, ann_token = signup(client)
    _, bob_token = signup(client)
    follow(client, bob_token, ann)
    issued = issue(client, bob_token, seconds=2)
    assert issued["expires_in"] == 2
    stream = TokenStream(client, issued["token"])
    before = post(client, ann_token, "before it expired")
    settle(broker)
    assert stream.drain() == [before]
    time.sleep(max(0.0, issued["expires"] - time.time()))  # the clock itself is what is under test
    missed = post(client, ann_token, "while the token was expired")
    response = stream.poll()
    assert refused(response, error="stream_token_expired"), response.text
    assert "expired" in response.json()["message"]
    stream.stream_token = issue(client, bob_token)["token"]
    settle(broker)
    assert stream.drain() == [before, missed]  # the same key and cursor: nothing lost


@pytest.mark.parametrize("params, status, param", [
    ({"seconds": "0"}, 400, "seconds"), ({"seconds": "601"}, 400, "seconds"), ({"seconds": "x"}, 400, "seconds"),
    ({"seconds": "1.5"}, 400, "seconds"), ({"scope": "all"}, 400, "scope")])
def test_bad_stream_token_requests_are_400s(client, params, status, param):
    _, token = signup(client)
    response = client.post("/home/stream-tokens", data=params, headers=auth(token))
    assert response.status_code == status and response.json()["param"] == param, response.text


def test_a_stream_token_needs_the_bearer_and_a_post(client):
    _, token = signup(client)
    assert client.post("/home/stream-tokens").status_code == 401
    assert client.post("/home/stream-tokens", headers=auth("not-a-token")).status_code == 401
    response = client.get("/home/stream-tokens", headers=auth(token))
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert client.post("/home/stream-tokens/more", headers=auth(token)).status_code == 404


def test_a_stream_token_lives_until_its_expiry_and_not_a_second_more():
    now = [1_000_000.0]
    tokens = StreamTokens(lifetime=600, clock=lambda: now[0])
    issued = tokens.issue(7)
    assert (issued["expires"], issued["expires_in"]) == (1_000_600, 600)
    assert tokens.issue(7, 30)["expires"] == 1_000_030 and tokens.issue(7, 6000)["expires_in"] == 600
    now[0] = 1_000_599.9
    assert tokens.verify(issued["token"]) == 7
    now[0] = 1_000_600.0
    with pytest.raises(Exception) as raised:
        tokens.verify(issued["token"])
    assert (raised.value.status, raised.value.code) == (401, "stream_token_expired")


def test_stream_tokens_of_one_process_stream_on_another_through_max_stream_seconds(durable_redis):
    """On Redis the secret is shared: a token issued by one process streams on the other; when the server
    ends the stream (max-stream-seconds), the same URL with Last-Event-ID resumes it on either process."""
    args = ("--redis", durable_redis.url, "--max-stream-seconds", "2")
    with ServerProcess(*args) as one, ServerProcess(*args) as two:
        with httpx.Client(base_url=one.wait_ready(), timeout=30) as a, \
                httpx.Client(base_url=two.wait_ready(), timeout=30) as b:
            ann, ann_token = signup(a)
            _, bob_token = signup(a)
            assert follow(b, bob_token, ann).status_code == 200
            issued = issue(a, bob_token)
            url = home_sse(issued["token"], unique("h"))
            first = Reader(b, "GET", url, SSE)
            first.wait_for(lambda r: r.frames)
            one_status = post(a, ann_token, "one")
            first.wait_for(lambda r: r.items() == [one_status])
            first.wait_for(lambda r: r.ended.is_set(), timeout=15)  # the server ended it after 2 s
            two_status = post(b, ann_token, "two")
            again = Reader(a, "GET", url, {**SSE, "Last-Event-ID": first.frames[-1]["id"]})
            again.wait_for(lambda r: r.items() == [two_status])

            data = redis.Redis.from_url(durable_redis.url)
            assert len(data.get("longpoll:stream-token-secret")) == 32
            data.delete("longpoll:stream-token-secret")  # revokes every stream token, in every process
            for client in (a, b):
                assert refused(client.get("/statuses/home.json", params={"identifier": "x", "stream_token":
                                                                         issued["token"]}))
            fresh = issue(b, bob_token)["token"]
            for client in (a, b):
                assert client.get("/statuses/home.json", params={"identifier": "x", "stream_token": fresh,
                                                                 "timeout": 0}).status_code == 200
