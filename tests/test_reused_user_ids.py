"""A user id used again after a data loss: a token of the old user is never the new user's.

Found from outside: after Redis lost its data (no persistence, kill -9 and a restart) the status streams'
user ids started again at 1.  Tokens name their user by id, so each test here makes a user, takes its
tokens, loses the data, makes a new user of the same id, and presents the old tokens: each must be refused
(401, JSON), while the new user's own are good.  Against a real redis-server (restarted empty, or rolled
back to an older snapshot, as a restore or a failover to a lagging replica does) and the embedded store
(its process restarted)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.conftest_support import wait_until
from tests.procs import ServerProcess
from tests.redisproc import RedisProcess
from tests.social_helpers import auth
from tests.streams_helpers import unique

pytestmark = pytest.mark.slow  # servers of their own, restarted: not in the quick loop


def sign_up(client: httpx.Client) -> dict[str, Any]:
    """A new user: id, login and API token."""
    response = client.post("/users", data={"login": unique("reused")})
    assert response.status_code == 201, response.text
    return response.json()


def stream_token(client: httpx.Client, token: str) -> str:
    response = client.post("/home/stream-tokens", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()["token"]


def home_poll(client: httpx.Client, *, stream: str | None = None, bearer: str | None = None) -> httpx.Response:
    params = {"identifier": unique("h"), "timeout": 0, **({"stream_token": stream} if stream else {})}
    return client.get("/statuses/home.json", params=params, headers=auth(bearer) if bearer else {})


def refused(response: httpx.Response) -> bool:
    return response.status_code == 401 and response.headers["Content-Type"] == "application/json" and \
        response.json()["error"] == "unauthorized"


def assert_old_tokens_refused(client: httpx.Client, old: dict[str, Any], old_stream: str) -> None:
    assert refused(home_poll(client, stream=old_stream)), home_poll(client, stream=old_stream).text
    assert refused(home_poll(client, bearer=old["token"]))
    assert refused(client.get("/home", headers=auth(old["token"])))
    assert refused(client.post("/home/stream-tokens", headers=auth(old["token"])))
    assert refused(client.post("/statuses", data={"message": "as whom?"}, headers=auth(old["token"])))


@pytest.fixture
def redis_proc() -> Iterator[RedisProcess]:
    proc = RedisProcess()  # no AOF; snapshots only when a test asks for one (SAVE)
    yield proc
    proc.stop()


def restart(proc: RedisProcess, client: httpx.Client) -> None:
    proc.kill()  # SIGKILL: what an OOM kill or a crash does
    proc.start()
    wait_until(lambda: client.get("/healthz").status_code == 200, timeout=30, what="the server to see Redis again")


def test_a_redis_that_lost_everything_refuses_the_tokens_of_the_old_user_of_an_id(redis_proc):
    with ServerProcess("--redis", redis_proc.url) as server, \
            httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
        old = sign_up(client)
        old_stream = stream_token(client, old["token"])
        assert home_poll(client, stream=old_stream).status_code == 200
        posted = client.post("/statuses", data={"message": "before"}, headers=auth(old["token"]))
        assert posted.status_code == 201, posted.text  # the process now knows whose the token is
        restart(redis_proc, client)  # started empty: users, tokens, the stream-token secret are gone
        new = sign_up(client)
        assert new["id"] == old["id"] == 1  # the id is used again
        assert_old_tokens_refused(client, old, old_stream)
        assert home_poll(client, stream=stream_token(client, new["token"])).status_code == 200
        assert home_poll(client, bearer=new["token"]).status_code == 200


def test_a_redis_rolled_back_to_an_older_snapshot_refuses_the_tokens_of_a_user_it_forgot(redis_proc):
    """What a restore from a backup, or a failover to a replica that had not caught up, does: the users made
    since the snapshot are gone and their ids are handed out again, but the stream-token secret, older than
    the snapshot, is still there.  A stream token signed with it for the forgotten user passed for the new
    user of that id, whose home stream it then read."""
    with ServerProcess("--redis", redis_proc.url) as server, \
            httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
        kept = sign_up(client)
        kept_stream = stream_token(client, kept["token"])  # the secret is made now, before the snapshot
        redis.Redis(port=redis_proc.port).save()
        forgotten = sign_up(client)
        forgotten_stream = stream_token(client, forgotten["token"])
        assert home_poll(client, stream=forgotten_stream).status_code == 200
        restart(redis_proc, client)  # loads the snapshot: `forgotten` was never there
        new = sign_up(client)
        assert new["id"] == forgotten["id"]
        assert_old_tokens_refused(client, forgotten, forgotten_stream)
        assert home_poll(client, stream=stream_token(client, new["token"])).status_code == 200
        # The user the snapshot kept is the same user: its tokens are still good.
        assert home_poll(client, stream=kept_stream).status_code == 200
        assert home_poll(client, bearer=kept["token"]).status_code == 200


def test_the_embedded_store_restarted_refuses_the_tokens_of_the_old_user_of_an_id():
    with ServerProcess() as server, httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
        old = sign_up(client)
        old_stream = stream_token(client, old["token"])
        assert home_poll(client, stream=old_stream).status_code == 200
    with ServerProcess() as server, httpx.Client(base_url=server.wait_ready(), timeout=30) as client:
        new = sign_up(client)
        assert new["id"] == old["id"] == 1
        assert_old_tokens_refused(client, old, old_stream)
        assert home_poll(client, stream=stream_token(client, new["token"])).status_code == 200
