"""End to end in headless Chromium (Debian's, never a downloaded one): the demo page
on a live server shows a posted status in the feed and as a blip on the map, and
both go when the status is deleted. A screenshot is kept in artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.chromium import chromium
from tests.conftest_support import free_port
from tests.procs import ROOT, ServerProcess
from tests.streams_helpers import post, signup, unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

ARTIFACTS = ROOT / "artifacts"


@pytest.fixture
def browser_page() -> Iterator[tuple[object, list[str]]]:
    with chromium() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page, errors


def test_demo_page_shows_a_posted_status_and_its_blip_then_loses_both_on_delete(browser_page):
    page, errors = browser_page
    with ServerProcess() as server:
        url = server.wait_ready()
        page.goto(url + "/")
        page.wait_for_selector("#connection[data-state=polling]", timeout=15_000)

        page.fill("#signup-form [name=login]", unique("e2e"))
        page.click("#signup-form [type=submit]")
        page.wait_for_selector("#signup-form .result[data-kind=ok]", timeout=10_000)

        message = "hello from the browser test <b>not bold</b>"
        page.fill("#post-form [name=message]", message)
        page.fill("#post-form [name=location]", "48.85,2.35")
        page.click("#post-form [type=submit]")
        item = page.wait_for_selector("#feed li.status", timeout=10_000)
        status_id = item.get_attribute("data-id")
        assert item.query_selector(".message").text_content() == message  # text, never markup
        assert page.query_selector("#feed li.status b") is None
        blip = page.wait_for_selector(f"#map .blip[data-id='{status_id}']", timeout=10_000)
        assert "translate(182.35" in (blip.get_attribute("transform") or "")  # lon 2.35 -> x 182.35
        page.wait_for_function("document.querySelector('[data-stat=items_delivered]').textContent.trim() > '0'",
                               timeout=10_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)

        page.fill("#delete-form [name=id]", status_id)
        page.click("#delete-form [type=submit]")
        page.wait_for_selector(f"#feed li.status[data-id='{status_id}']", state="detached", timeout=10_000)
        page.wait_for_selector(f"#map .blip[data-id='{status_id}']", state="detached", timeout=10_000)
    assert not errors, errors
    assert (ARTIFACTS / "demo-page.png").stat().st_size > 10_000


def test_demo_page_streams_over_sse_and_gets_every_status_once_through_a_server_restart(browser_page, durable_redis):
    """transport "auto": the page streams with EventSource; the server is stopped mid-stream and started again
    on the same port and Redis; the stream comes back at its cursor, and every status shows exactly once."""
    page, errors = browser_page
    port = str(free_port())
    args = ("--redis", durable_redis.url, "--port", port)
    messages = [f"{unique('sse')} {i}" for i in range(6)]

    def shown() -> list[str]:
        return page.eval_on_selector_all("#feed li.status .message", "nodes => nodes.map(n => n.textContent)")

    def post_all(url: str, batch: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            _, token = signup(client)
            for message in batch:
                post(client, token, message)

    with ServerProcess(*args) as server:
        url = server.wait_ready()
        page.goto(url + "/")
        page.wait_for_selector("#connection[data-state=polling][data-transport=sse]", timeout=15_000)
        assert "SSE" in page.text_content("#connection")
        post_all(url, messages[:3])
        page.wait_for_function("n => document.querySelectorAll('#feed li.status').length >= n", arg=3,
                               timeout=10_000)
    with ServerProcess(*args) as server:  # the stream's connection died with the first server
        url = server.wait_ready()
        post_all(url, messages[3:])
        page.wait_for_function("n => document.querySelectorAll('#feed li.status').length >= n", arg=6,
                               timeout=20_000)
        page.wait_for_selector("#connection[data-state=polling][data-transport=sse]", timeout=15_000)
        assert sorted(m for m in shown() if m in messages) == sorted(messages)  # each once: none lost, none twice
    assert not errors, errors


def readme_stream() -> str:
    """docs/clients.md's plain-EventSource loop, without its example call."""
    found = re.search(r"<!-- eventsource-loop -->\n```js\n(.*?)\n```", (ROOT / "docs" / "clients.md").read_text(),
                      re.S)
    assert found, "docs/clients.md has no <!-- eventsource-loop --> block"
    return "\n".join(line for line in found.group(1).splitlines() if not line.startswith("stream("))


def test_readme_eventsource_loop_gets_every_status_once_in_order_through_a_server_restart(browser_page,
                                                                                          durable_redis):
    page, errors = browser_page
    port = str(free_port())
    args = ("--redis", durable_redis.url, "--port", port)
    html = ("<!doctype html><meta charset=utf-8><script>var seen = [], keys = [];\n" + readme_stream() +
            "\nstream('/statuses/sample.json', {identifier: 'readme-sse', percent: 100}, "
            "function (items, body) { keys.push(body.key); items.forEach(function (s) { seen.push(s.id); }); });"
            "</script>")
    published: list[int] = []

    def post_some(url: str, count: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            _, token = signup(client)
            published.extend(post(client, token, unique("m"))["id"] for _ in range(count))

    def wait_for_all() -> None:
        page.wait_for_function("n => seen.length >= n", arg=len(published), timeout=20_000)

    with ServerProcess(*args) as server:
        url = server.wait_ready()
        page.route(f"{url}/readme-sse.html", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                           body=html))
        page.goto(f"{url}/readme-sse.html")
        # the stream's first event (a new session's, at once) carries no items: wait for the session in Redis
        durable = redis.Redis.from_url(durable_redis.url)
        deadline = time.monotonic() + 15
        while not durable.keys("longpoll:session:*"):
            assert time.monotonic() < deadline, "the page's stream never made a session"
            time.sleep(0.05)
        post_some(url, 3)
        wait_for_all()
    with ServerProcess(*args) as server:
        post_some(server.wait_ready(), 3)
        wait_for_all()
    assert page.evaluate("seen") == published, "every status once, in order"
    assert len(set(page.evaluate("keys"))) == 1, "one session, resumed by Last-Event-ID"
    assert not errors, errors


REFUSED_PAGE = """<!doctype html><meta charset=utf-8><script src="/web/longpoll.js"></script><script>
  var ended = {};
  function follow(name, url, options) {
    var opened = 0;  // the streams this client opens, through the browser's own EventSource
    function CountedEventSource(url, init) { opened += 1; return new EventSource(url, init); }
    var lp = new LongPoll(url, Object.assign({quickStart: true, minBackoff: 100, maxBackoff: 500,
      EventSource: CountedEventSource,
      onError: function (error) {
        ended[name] = {status: error.status, error: error.error, param: error.param || null,
                       running: lp.running, state: lp.state, opened: opened};
      }}, options));
    lp.start();
    return lp;
  }
</script>"""


def test_an_answer_before_a_stream_starts_is_learnt_and_stops_the_client_on_every_transport(browser_page):
    """A 400 and a 403 reach EventSource only as a failed connection: one poll learns them, onError hears them
    with the server's own fields, and the client stops (before, transport "sse" retried them for ever)."""
    page, errors = browser_page
    with ServerProcess() as server:
        url = server.wait_ready()
        with httpx.Client(base_url=url, timeout=10) as client:
            first = client.get("/statuses/sample.json", params={"identifier": "owner", "timeout": 0}).json()
        page.route(f"{url}/refused.html", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                       body=REFUSED_PAGE))
        page.goto(f"{url}/refused.html")
        cases = {}
        for transport in ("sse", "auto"):
            cases[f"400 {transport}"] = (transport, "/statuses/sample.json", {"identifier": "me", "percent": 500},
                                         None)
            cases[f"403 {transport}"] = (transport, "/statuses/sample.json", {"identifier": "thief"}, first)
        for name, (transport, path, params, session) in cases.items():
            options = {"transport": transport, "params": params}
            if session:
                options.update(key=session["key"], cursor=session["cursor"])
            page.evaluate("([name, path, options]) => { window[name] = follow(name, path, options); }",
                          [name, path, options])
        page.wait_for_function("n => Object.keys(ended).length === n", arg=len(cases), timeout=15_000)
        ended = page.evaluate("ended")
        for name in cases:
            status = int(name.split()[0])
            assert ended[name]["status"] == status, (name, ended[name])
            assert ended[name]["error"] == ("bad_parameter" if status == 400 else "forbidden"), ended[name]
            assert ended[name]["param"] == ("percent" if status == 400 else None)
            assert (ended[name]["running"], ended[name]["state"]) == (False, "stopped")
            assert ended[name]["opened"] == 1, "one stream, then one poll to learn why, then nothing"
            assert page.evaluate("name => window[name].transportInUse", name) == "sse", name
    assert not errors, errors
