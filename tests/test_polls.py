"""The poll protocol over real HTTP: batches, holding, cursors, expiry, concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import pytest

from longpoll.gate import HELD
from longpoll.session import batch_number
from tests.apps import FINALLY, SHORT_IDLE
from tests.conftest_support import wait_until, waiting

PRIMES_TO_100 = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97]


def drain(client: httpx.Client, path: str, max_items: int, **params) -> list[dict]:
    """Poll until done; return every response body."""
    bodies = [client.get(path, params={"max": max_items, **params}).json()]
    while bodies[-1]["state"] == "ready":
        last = bodies[-1]
        bodies.append(client.get(path, params={"key": last["key"], "cursor": last["cursor"],
                                               "max": max_items}).json())
        assert len(bodies) < 100, "a finite generator never said done"
    return bodies


def test_batches_hold_at_most_max_items_in_order(client):
    bodies = drain(client, "/primes", 4, limit=100)
    assert [len(b["items"]) for b in bodies[:-1]] == [4] * (len(bodies) - 1)
    assert 1 <= len(bodies[-1]["items"]) <= 4
    assert [p for b in bodies for p in b["items"]] == PRIMES_TO_100
    assert len({b["key"] for b in bodies}) == 1
    assert len({b["cursor"] for b in bodies}) == len(bodies)


def test_done_ends_the_session(client):
    bodies = drain(client, "/primes", 1000, limit=20)
    assert len(bodies) == 1 and bodies[0]["state"] == "done"
    assert bodies[0]["items"] == [2, 3, 5, 7, 11, 13, 17, 19]
    after = client.get("/primes", params={"key": bodies[0]["key"], "cursor": bodies[0]["cursor"]})
    assert after.status_code == 410
    assert after.json()["state"] == "expired"


def test_done_batch_is_resent_when_its_answer_was_lost(client):
    first = client.get("/primes", params={"limit": 10, "max": 2}).json()
    last = client.get("/primes", params={"key": first["key"], "cursor": first["cursor"], "max": 10}).json()
    assert last["state"] == "done" and last["items"] == [5, 7]
    again = client.get("/primes", params={"key": first["key"], "cursor": first["cursor"], "max": 10}).json()
    assert again == last


def test_previous_cursor_gets_the_same_batch_again(client):
    one = client.get("/primes", params={"limit": 100, "max": 3}).json()
    two = client.get("/primes", params={"key": one["key"], "cursor": one["cursor"], "max": 3}).json()
    lost = client.get("/primes", params={"key": one["key"], "cursor": one["cursor"], "max": 3}).json()
    assert lost == two
    three = client.get("/primes", params={"key": one["key"], "cursor": two["cursor"], "max": 3}).json()
    assert one["items"] + two["items"] + three["items"] == PRIMES_TO_100[:9]


def test_a_stale_cursor_is_refused_and_the_session_survives(client):
    one = client.get("/primes", params={"limit": 100, "max": 3}).json()
    two = client.get("/primes", params={"key": one["key"], "cursor": one["cursor"], "max": 3}).json()
    client.get("/primes", params={"key": one["key"], "cursor": two["cursor"], "max": 3})
    stale = client.get("/primes", params={"key": one["key"], "cursor": one["cursor"], "max": 3})
    assert stale.status_code == 400 and stale.json()["param"] == "cursor"


def test_a_poll_with_nothing_ready_is_held_then_answers_empty(client):
    start = time.monotonic()
    body = client.get("/topics/quiet-" + uuid.uuid4().hex, params={"timeout": 0.6}).json()
    assert time.monotonic() - start >= 0.55
    assert body["state"] == "ready" and body["items"] == []
    again = client.get("/topics/x", params={"key": body["key"], "cursor": body["cursor"], "timeout": 0})
    assert again.status_code == 403  # the key was made for another topic: not valid here


def test_timeout_zero_answers_at_once(client):
    topic = "/topics/zero-" + uuid.uuid4().hex
    body = client.get(topic, params={"timeout": 0}).json()
    assert body["items"] == [] and body["cursor"] == "0"
    follow = client.get(topic, params={"key": body["key"], "cursor": body["cursor"], "timeout": 0}).json()
    assert follow["items"] == [] and follow["key"] == body["key"]


def test_data_arriving_during_a_held_poll_releases_it_at_once(client, base, topics_registry):
    topic = "/topics/live-" + uuid.uuid4().hex
    first = client.get(topic, params={"timeout": 0}).json()
    result: dict = {}

    def hold():
        with httpx.Client(base_url=base, timeout=60) as c:
            result["body"] = c.get(topic, params={"key": first["key"], "cursor": first["cursor"],
                                                  "timeout": 45}).json()
            result["at"] = time.monotonic()

    waiter = threading.Thread(target=hold)
    waiter.start()
    wait_until(lambda: waiting(topics_registry, first["key"]), what="the poll to be held")
    published_at = time.monotonic()
    assert client.post(topic, json={"n": 1}).status_code == 201
    waiter.join(timeout=20)
    assert not waiter.is_alive(), "the held poll was not released by the publish"
    assert result["body"]["items"] == [{"n": 1}]
    assert result["at"] - published_at < 20  # released by the item, not by its 45 s timeout


def test_unknown_key_answers_410_expired(client):
    response = client.get("/primes", params={"key": "A" * 24, "cursor": "1"})
    assert response.status_code == 410
    assert response.json() == {"error": "expired", "state": "expired",
                               "message": response.json()["message"]}


def test_idle_session_expires_closes_its_generator_and_answers_410(client):
    token = uuid.uuid4().hex
    body = client.get("/t/short/tracked", params={"token": token, "max": 2}).json()
    assert body["items"] == [0, 1]
    assert FINALLY[token].wait(SHORT_IDLE + 10), "the expired generator's finally did not run"
    response = client.get("/t/short/tracked", params={"key": body["key"], "cursor": body["cursor"]})
    assert response.status_code == 410 and response.json()["state"] == "expired"


def test_a_session_polled_in_time_does_not_expire(client):
    token = uuid.uuid4().hex
    body = client.get("/t/short/tracked", params={"token": token, "max": 1}).json()
    # Keep it busy with held polls longer than its idle timeout: in-flight polls are not idleness.
    topic_token = uuid.uuid4().hex
    held = client.get("/t/short/waiting", params={"topic": "idle-" + topic_token, "token": topic_token,
                                                  "timeout": 0}).json()
    for _ in range(3):
        held = client.get("/t/short/waiting", params={"key": held["key"], "cursor": held["cursor"],
                                                      "timeout": SHORT_IDLE}).json()
    assert not FINALLY[topic_token].is_set()
    assert FINALLY[token].wait(SHORT_IDLE + 10)  # while the unpolled one did expire
    assert body["items"] == [0]


def test_two_polls_on_one_key_the_newer_releases_the_older(client, base, topics_registry):
    topic = "/topics/race-" + uuid.uuid4().hex
    first = client.get(topic, params={"timeout": 0}).json()
    params = {"key": first["key"], "cursor": first["cursor"], "timeout": 45}
    older: dict = {}

    def hold():
        with httpx.Client(base_url=base, timeout=60) as c:
            response = c.get(topic, params=params)
            older["status"], older["body"] = response.status_code, response.json()

    thread = threading.Thread(target=hold)
    thread.start()
    wait_until(lambda: waiting(topics_registry, first["key"]), what="the first poll to be held")
    newer: dict = {}

    def hold_newer():
        with httpx.Client(base_url=base, timeout=60) as c:
            response = c.get(topic, params=params)
            newer["status"], newer["body"] = response.status_code, response.json()

    second = threading.Thread(target=hold_newer)
    second.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the older poll was not released by the newer one"
    assert older["status"] == 200 and older["body"]["items"] == []
    assert older["body"]["cursor"] == first["cursor"]
    wait_until(lambda: waiting(topics_registry, first["key"]), what="the newer poll to be held")
    client.post(topic, json="only-once")
    second.join(timeout=20)
    assert newer["status"] == 200 and newer["body"]["items"] == ["only-once"]


def test_racing_polls_on_one_key_lose_and_repeat_nothing(client, base, topics_broker):
    """Two connections poll one session at once with whatever cursor is newest;
    batches are keyed by cursor, and together they hold every item exactly once."""
    topic = "race2-" + uuid.uuid4().hex
    first = client.get("/topics/" + topic, params={"timeout": 0}).json()
    state = {"cursor": first["cursor"]}
    batches: dict[str, list] = {}
    lock = threading.Lock()
    errors: list = []
    total = 300
    stop = threading.Event()

    def poller():
        with httpx.Client(base_url=base, timeout=60) as c:
            while not stop.is_set():
                with lock:
                    cursor = state["cursor"]
                r = c.get("/topics/" + topic, params={"key": first["key"], "cursor": cursor,
                                                      "timeout": 0.2, "max": 7})
                if r.status_code == 429:  # polling this fast is throttled: wait as told
                    time.sleep(r.json()["retry_ms"] / 1000)
                    continue
                if r.status_code != 200:
                    if not (r.status_code == 400 and r.json().get("param") == "cursor"):
                        errors.append((r.status_code, r.text))
                    continue
                body = r.json()
                with lock:
                    if body["items"]:
                        previous = batches.setdefault(body["cursor"], body["items"])
                        if previous != body["items"]:
                            errors.append(("one cursor, two batches", body["cursor"]))
                    if batch_number(body["cursor"]) > batch_number(state["cursor"]):  # cursors are opaque
                        state["cursor"] = body["cursor"]

    threads = [threading.Thread(target=poller) for _ in range(2)]
    for t in threads:
        t.start()
    for n in range(total):
        topics_broker.publish(topic, n)
    wait_until(lambda: sum(len(b) for b in batches.values()) >= total or errors, timeout=30,
               what="every item to be delivered")
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not errors
    delivered = [item for cursor in sorted(batches, key=batch_number) for item in batches[cursor]]
    assert delivered == list(range(total))


def test_200_held_polls_while_a_ready_poll_still_answers(topics_registry, base, client):
    topic = "/topics/crowd-" + uuid.uuid4().hex
    known = {session.key for session in topics_registry.sessions()}
    n = 200

    def held() -> int:
        return sum(waiting(topics_registry, session.key) for session in topics_registry.sessions()
                   if session.key not in known)

    async def crowd() -> tuple[list, float]:
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as ac:
            polls = [asyncio.create_task(ac.get(topic, params={"timeout": 40})) for _ in range(n)]
            deadline = time.monotonic() + 20
            while held() < n:
                assert time.monotonic() < deadline, f"only {held()} of {n} polls held"
                await asyncio.sleep(0.01)
            started = time.monotonic()
            ready = await ac.get("/primes", params={"limit": 50, "timeout": 0}, timeout=10)
            ready_latency = time.monotonic() - started
            assert ready.status_code == 200 and ready.json()["items"][:3] == [2, 3, 5]
            published = await ac.post(topic, json={"to": "everyone"})
            assert published.status_code == 201
            return await asyncio.gather(*polls), ready_latency

    responses, latency = asyncio.run(crowd())
    assert [r.status_code for r in responses] == [200] * n
    assert all(r.json()["items"] == [{"to": "everyone"}] for r in responses)
    print(f"ready poll answered in {latency * 1000:.1f} ms with {n} polls held")


def test_polls_beyond_the_hold_gate_answer_at_once_with_retry_ms(client, base, monkeypatch):
    topic = "/topics/gate-" + uuid.uuid4().hex
    first = client.get(topic, params={"timeout": 0}).json()
    monkeypatch.setattr(HELD, "limit", HELD.held)  # no room to wait
    body = client.get(topic, params={"key": first["key"], "cursor": first["cursor"], "timeout": 30}).json()
    assert body["items"] == [] and body["retry_ms"] > 0


def test_a_generator_that_raises_ends_only_its_session(client):
    body = client.get("/t/failing", params={"after": 2, "max": 10}).json()
    assert body["items"] == [0, 1]  # what it yielded before failing is delivered
    failed = client.get("/t/failing", params={"key": body["key"], "cursor": body["cursor"]})
    assert failed.status_code == 500
    assert failed.json()["error"] == "generator_failed"
    assert "secret-detail-42" not in failed.text and "Traceback" not in failed.text
    assert client.get("/t/failing", params={"key": body["key"], "cursor": body["cursor"]}).status_code == 410
    immediately = client.get("/t/failing", params={"after": 0})
    assert immediately.status_code == 500 and immediately.json()["error"] == "generator_failed"
    assert client.get("/primes", params={"limit": 10}).json()["items"] == [2, 3, 5, 7]


def test_session_limit_answers_429_and_loses_nothing(client, probe):
    probe.limited.registry.close_all()  # its two places are shared with the other fronts' runs of this test
    made = [client.get("/t/limited", params={"token": uuid.uuid4().hex, "max": 1}) for _ in range(2)]
    assert [r.status_code for r in made] == [200, 200]
    over = client.get("/t/limited", params={"token": uuid.uuid4().hex})
    assert over.status_code == 429
    assert over.json()["error"] == "too_many_sessions"
    assert int(over.headers["Retry-After"]) >= 1
    body = made[0].json()
    more = client.get("/t/limited", params={"key": body["key"], "cursor": body["cursor"], "max": 1}).json()
    assert more["items"] == [1]  # existing sessions carry on


@pytest.mark.parametrize("path,method", [("/primes", "DELETE"), ("/primes", "PUT"), ("/topics/a", "DELETE")])
def test_wrong_method_is_405_json(client, path, method):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unknown_path_is_404_json(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_sessions_per_identifier_are_capped(client):
    identifier = "crowded-" + uuid.uuid4().hex[:8]
    made = [client.get("/statuses/sample.json", params={"identifier": identifier, "timeout": 0})
            for _ in range(20)]
    assert {r.status_code for r in made} == {200}
    over = client.get("/statuses/sample.json", params={"identifier": identifier, "timeout": 0})
    assert over.status_code == 429 and over.json()["error"] == "too_many_sessions"
    assert int(over.headers["Retry-After"]) >= 1
    other = client.get("/statuses/sample.json", params={"identifier": identifier + "x", "timeout": 0})
    assert other.status_code == 200  # the cap is per identifier


def test_polling_too_fast_is_429_with_retry_after(client):
    body = client.get("/primes", params={"limit": 10_000_000, "max": 1}).json()
    codes = []
    for _ in range(2000):  # the burst allowance is 100 polls; nobody polls a long-poll this fast
        r = client.get("/primes", params={"key": body["key"], "cursor": body["cursor"], "max": 1})
        codes.append(r.status_code)
        if r.status_code == 200:
            body = r.json()
        else:
            assert r.status_code == 429 and r.json()["error"] == "too_many_requests"
            assert int(r.headers["Retry-After"]) >= 1 and r.json()["retry_ms"] >= 1
            break
    assert codes[-1] == 429 and len(codes) > 100
    time.sleep(r.json()["retry_ms"] / 1000)
    resumed = client.get("/primes", params={"key": body["key"], "cursor": body["cursor"], "max": 1})
    assert resumed.status_code == 200  # and nothing was lost meanwhile
    assert batch_number(resumed.json()["cursor"]) == batch_number(body["cursor"]) + 1


def test_continuation_polls_take_the_fast_path_and_first_polls_do_not(server, client, front):
    fast = server["fast"]
    before = fast.answered
    first = client.get("/primes", params={"limit": 100, "max": 3}).json()
    assert fast.answered == before  # a first poll calls the generator function: CherryPy's path
    second = client.get("/primes", params={"key": first["key"], "cursor": first["cursor"], "max": 3}).json()
    assert second["items"] == [7, 11, 13]
    assert fast.answered == before + (front == "fastpath")
