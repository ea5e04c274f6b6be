"""Faults on purpose: nothing lost, nothing duplicated, for every session.

Each test counts the statuses published and the statuses each session
received, and prints the counts (run with -s to see them).
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from longpoll.endpoint import endpoint_of
from tests.conftest_support import free_port, wait_until, waiting
from tests.procs import ServerProcess
from tests.streams_helpers import Stream, post, settle, signup, unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop


def tally(name: str, published: list[int], received: list[int]) -> None:
    """Assert exactly-once, in-order delivery and print the counts for the record."""
    lost = len(set(published) - set(received))
    duplicated = len(received) - len(set(received))
    print(f"\n{name}: published={len(published)} received={len(received)} lost={lost} duplicated={duplicated}")
    assert (lost, duplicated) == (0, 0)
    assert received == published


def test_a_server_killed_and_restarted_while_clients_poll(durable_redis):
    port = free_port()
    polled = ServerProcess("--redis", durable_redis.url, "--port", str(port))
    with ServerProcess("--redis", durable_redis.url) as publisher:
        url = polled.wait_ready()
        with httpx.Client(base_url=url, timeout=30) as a, \
                httpx.Client(base_url=publisher.wait_ready(), timeout=30) as p:
            author, token = signup(p)
            word = unique("k")
            streams = {"sample": Stream(a, "sample", percent=100), "track": Stream(a, "filter", track=word),
                       "follow": Stream(a, "filter", follow=author)}
            published: list[int] = []
            results: dict[str, list[int]] = {}

            def client(name: str, stream: Stream) -> None:
                results[name] = stream.collect(40, timeout=90)

            threads = [threading.Thread(target=client, args=item) for item in streams.items()]
            for thread in threads:
                thread.start()
            for i in range(40):
                published.append(post(p, token, f"{word} number {i}")["id"])
                if i == 15:
                    polled.kill()  # SIGKILL: no cleanup, sessions only in Redis now
                if i == 25:
                    polled = ServerProcess("--redis", durable_redis.url, "--port", str(port))
                    polled.wait_ready()
                time.sleep(0.02)
            for thread in threads:
                thread.join(timeout=120)
            polled.stop()
            for name in streams:
                tally(f"server SIGKILLed, {name}", published, results[name])


def test_polls_alternating_between_two_server_processes(durable_redis):
    with ServerProcess("--redis", durable_redis.url) as one, ServerProcess("--redis", durable_redis.url) as two:
        with httpx.Client(base_url=one.wait_ready(), timeout=30) as a, \
                httpx.Client(base_url=two.wait_ready(), timeout=30) as b:
            author, token = signup(a)
            streams = {"sample": Stream(a, "sample", percent=100), "follow": Stream(b, "filter", follow=author)}
            published = []
            results: dict[str, list[int]] = {}

            def client(name: str, stream: Stream) -> None:
                results[name] = stream.collect(50, timeout=90, poll_timeout=0.3, clients=[a, b])

            threads = [threading.Thread(target=client, args=item) for item in streams.items()]
            for thread in threads:
                thread.start()
            for i in range(50):
                published.append(post(a if i % 2 else b, token, f"alternating {i}")["id"])
                time.sleep(0.01)
            for thread in threads:
                thread.join(timeout=120)
            resumed = sum(httpx.get(url + "/stats", timeout=10).json()["sessions_resumed"]
                          for url in (str(a.base_url), str(b.base_url)))
            print(f"\nsessions rebuilt from Redis while alternating: {resumed}")
            assert resumed >= 10  # the sessions really moved back and forth
            for name in streams:
                tally(f"alternating processes, {name}", published, results[name])


def test_lost_responses_are_sent_again(client, broker):
    """Every other answer is "lost": the client re-polls with its previous cursor."""
    _, token = signup(client)
    stream = Stream(client, "sample", identifier=unique("lossy"), percent=100)
    published = [post(client, token, f"lossy {i}")["id"] for i in range(30)]
    settle(broker)
    received: list[int] = []
    lost_answers = 0
    cursor = stream.cursor
    while len(received) < len(published):
        params = {"identifier": stream.identifier, "key": stream.key, "cursor": cursor, "max": 4, "timeout": 0}
        first = client.get("/statuses/sample.json", params=params).json()
        again = client.get("/statuses/sample.json", params=params).json()  # the first answer never arrived
        lost_answers += 1
        assert again == first
        received += [item["id"] for item in again["items"]]
        cursor = again["cursor"]
    tally(f"lost responses ({lost_answers} lost)", published, received)


def test_a_client_that_disconnects_during_a_held_poll_loses_nothing(client, base, broker, server, backend):
    _, token = signup(client)
    stream = Stream(client, "sample", identifier=unique("gone"), percent=100)
    url = httpx.URL(base)
    query = (f"identifier={stream.identifier}&key={stream.key}&cursor={stream.cursor}&timeout=5")
    registry = endpoint_of(server["roots"][backend].statuses.sample_json).registry
    with socket.create_connection((url.host, url.port), timeout=10) as conn:
        conn.sendall(f"GET {url.path}/statuses/sample.json?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: waiting(registry, stream.key), what="the poll to be held")
    # The client is gone; the server still answers its held poll with what arrives now.
    published = [post(client, token, "while nobody listens")["id"]]
    settle(broker)
    wait_until(lambda: not waiting(registry, stream.key), what="the abandoned poll to finish")
    published += [post(client, token, "after coming back")["id"]]
    settle(broker)
    stream.collect(2, timeout=20, poll_timeout=1)  # polls again with the cursor it had
    tally("client disconnected mid-poll", published, stream.ids())
