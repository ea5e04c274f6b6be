"""Cursors a session never issued, on every front, on a live session and on one taken over from Redis.

A live session refused them with a 400 naming ``cursor``; a session another
process took over from the store did not: a number past 64 bits was a 500
(the store could not hold it) and a cursor ahead of the session was taken
for a batch Redis had lost, which locked the real client out.  Now both go
through one set of rules: the same 400, nothing changed, and the real client
carries on with its own cursor.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.procs import ServerProcess
from tests.streams_helpers import unique

ODD = ["18446744073709551616", "99999999999999999999999", "7", "7.AAAAAAAA", "abc", "1"]
"""Past 64 bits, far past it, ahead of the session (plain, and signed with a made-up signature), not a
number, and the session's own batch number without its signature."""


@pytest.fixture(scope="module")
def serve(server) -> Iterator[str]:
    """``longpoll serve`` on the Redis of the in-process fronts, under the same prefix: each can take over the
    other's sessions."""
    if server["redis"] is None:
        pytest.skip("redis-server is not installed")
    with ServerProcess("--redis", server["redis"].url) as process:
        yield process.wait_ready()


def fronts(server: dict, serve: str) -> dict[str, str]:
    return {"cherrypy": server["url"] + "/redis", "fastpath": server["fast_url"] + "/redis",
            **({"asgi": server["asgi_url"] + "/redis"} if server["asgi_url"] else {}), "serve": serve}


def refusals(base: str, topic: str, key: str) -> list[tuple[int, str | None, str | None]]:
    answers = []
    for cursor in ODD:
        answer = httpx.get(f"{base}/topics/{topic}", params={"key": key, "cursor": cursor, "timeout": 0}, timeout=30)
        body = answer.json()
        answers.append((answer.status_code, body.get("error"), body.get("param")))
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("taken_over", [False, True], ids=["live", "taken over"])
def test_odd_cursors_answer_alike_on_every_front_and_change_nothing(server, serve, taken_over):
    places = fronts(server, serve)
    seen = {}
    for name, base in places.items():
        # The session is made (and answered past its first cursor) where it is polled, or in another process.
        maker = base if not taken_over else (serve if name != "serve" else places["cherrypy"])
        topic = unique("cursors")
        first = httpx.get(f"{maker}/topics/{topic}", params={"timeout": 0}, timeout=30).json()
        httpx.post(f"{maker}/topics/{topic}", json="one", timeout=30)
        second = httpx.get(f"{maker}/topics/{topic}", params={"key": first["key"], "cursor": first["cursor"],
                                                              "timeout": 10}, timeout=30).json()
        assert second["items"] == ["one"], second
        seen[name] = refusals(base, topic, first["key"])
        assert all(answer == (400, "bad_parameter", "cursor") for answer in seen[name]), (name, seen[name])
        httpx.post(f"{maker}/topics/{topic}", json="two", timeout=30)
        for place in {base, maker}:  # the real client carries on, wherever it polls next
            again = httpx.get(f"{place}/topics/{topic}", params={"key": first["key"], "cursor": second["cursor"],
                                                                 "timeout": 10}, timeout=30)
            assert again.status_code == 200 and again.json()["items"] == ["two"], (name, again.text)
    assert len({tuple(answers) for answers in seen.values()}) == 1, seen
