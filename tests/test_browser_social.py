"""The demo page's social graph in headless Chromium: a follow button on a status's author, the home
timeline it fills, and the home stream, streamed over SSE with a stream token, showing the followed user's
statuses, also across the token's expiry."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.procs import ServerProcess
from tests.streams_helpers import unique
from tests.test_browser import ARTIFACTS, browser_page  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

POSTS = 20


def test_follow_from_the_feed_then_watch_the_home_stream(browser_page):  # noqa: F811
    page, errors = browser_page
    with ServerProcess() as server:
        url = server.wait_ready()
        author = unique("star")
        with httpx.Client(base_url=url, timeout=10) as c:
            token = c.post("/users", data={"login": author, "name": "A Star"}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            page.goto(url + "/")
            page.wait_for_selector("#connection[data-state=polling]", timeout=15_000)
            page.fill("#signup-form [name=login]", unique("reader"))
            page.click("#signup-form [type=submit]")
            page.wait_for_selector("#signup-form .result[data-kind=ok]", timeout=10_000)

            first = c.post("/statuses", data={"message": "before the follow"}, headers=headers).json()
            item = page.wait_for_selector(f"#feed li.status[data-id='{first['id']}']", timeout=10_000)
            assert item.query_selector(".name").text_content() == "A Star"  # the name hydrator's field
            button = item.query_selector("button.follow")
            assert button.text_content() == "Follow"
            button.click()
            page.wait_for_selector(f"#feed li.status[data-id='{first['id']}'] button.follow[data-following=true]",
                                   timeout=10_000)
            page.wait_for_selector(f"#home-list li[data-id='{first['id']}']", timeout=10_000)  # copied on follow

            page.select_option("#stream-form [name=kind]", "home")
            page.fill("#stream-form [name=backfill]", "0")
            page.click("#stream-form [type=submit]")
            page.wait_for_selector("#feed li.status", state="detached", timeout=10_000)  # a fresh feed
            page.wait_for_function("document.querySelector('#stream-label').textContent.startsWith('home')",
                                   timeout=10_000)
            # streamed: EventSource, with a stream token in its URL instead of the Authorization header
            page.wait_for_selector("#connection[data-state=polling][data-transport=sse]", timeout=15_000)
            second = c.post("/statuses", data={"message": "to my followers"}, headers=headers).json()
            page.wait_for_selector(f"#feed li.status[data-id='{second['id']}']", timeout=10_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-home.png"), full_page=True)
    assert not errors, errors


def test_the_home_stream_gets_a_fresh_token_when_its_own_expires_and_misses_nothing(browser_page):  # noqa: F811
    """Stream tokens of 3 s (the page's request is rewritten to ask for that) and streams the server ends after
    2 s: the reconnects present an expired token, the page gets a fresh one and resumes the same session.
    Statuses posted all along arrive, each once."""
    page, errors = browser_page
    issued: list[int] = []

    def short_tokens(route, request):
        issued.append(request.headers.get("authorization", "").startswith("Bearer "))
        route.continue_(post_data=json.dumps({"seconds": 3}),
                        headers={**request.headers, "content-type": "application/json"})

    with ServerProcess("--max-stream-seconds", "2") as server:
        url = server.wait_ready()
        page.route(f"{url}/home/stream-tokens", short_tokens)
        with httpx.Client(base_url=url, timeout=10) as c:
            author = unique("star")
            token = c.post("/users", data={"login": author}).json()["token"]
            page.goto(url + "/")
            page.fill("#signup-form [name=login]", unique("reader"))
            page.click("#signup-form [type=submit]")
            page.wait_for_selector("#signup-form .result[data-kind=ok]", timeout=10_000)
            reader = page.evaluate("JSON.parse(localStorage.getItem('longpoll.user')).token")
            assert c.post(f"/users/{author}/follow", headers={"Authorization": f"Bearer {reader}"}).status_code == 200

            page.select_option("#stream-form [name=kind]", "home")
            page.fill("#stream-form [name=backfill]", "0")
            page.click("#stream-form [type=submit]")
            page.wait_for_selector("#connection[data-state=polling][data-transport=sse]", timeout=15_000)
            page.wait_for_function("JSON.parse(sessionStorage.getItem('longpoll.session') || '{}').key",
                                   timeout=10_000)
            key = page.evaluate("JSON.parse(sessionStorage.getItem('longpoll.session')).key")

            posted: list[int] = []
            stop = threading.Event()

            def keep_posting() -> None:  # for about 8 s: through several stream ends and token expiries
                for n in range(POSTS):
                    if stop.is_set():
                        return
                    status = c.post("/statuses", data={"message": f"status {n}"},
                                    headers={"Authorization": f"Bearer {token}"})
                    posted.append(status.json()["id"])
                    stop.wait(0.4)

            # Posted from a thread while this one waits inside playwright, which must keep running: it
            # answers the page's token requests (the route above).
            poster = threading.Thread(target=keep_posting)
            poster.start()
            try:
                page.wait_for_function("n => document.querySelectorAll('#feed li.status').length >= n",
                                       arg=POSTS, timeout=40_000)
            finally:
                stop.set()
                poster.join(30)
            shown = page.eval_on_selector_all("#feed li.status", "nodes => nodes.map((n) => Number(n.dataset.id))")
            assert len(posted) == POSTS and sorted(shown) == sorted(posted), "each status once"
            assert len(issued) >= 3 and all(issued), issued  # the first token, and fresh ones after expiries
            assert page.evaluate("JSON.parse(sessionStorage.getItem('longpoll.session')).key") == key, \
                "the same session all along"
            page.wait_for_selector("#connection[data-state=polling][data-transport=sse]", timeout=15_000)
    assert not errors, errors
