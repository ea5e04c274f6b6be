"""The demo page's social graph in headless Chromium: a follow button on a status's author, the home
timeline it fills, and the home stream showing the followed user's next status."""

from __future__ import annotations

import httpx

from tests.procs import ServerProcess
from tests.streams_helpers import unique
from tests.test_browser import ARTIFACTS, browser_page  # noqa: F401 (a fixture)


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
            page.wait_for_selector("#connection[data-state=polling]", timeout=15_000)
            second = c.post("/statuses", data={"message": "to my followers"}, headers=headers).json()
            page.wait_for_selector(f"#feed li.status[data-id='{second['id']}']", timeout=10_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-home.png"), full_page=True)
    assert not errors, errors
