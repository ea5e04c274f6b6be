"""The clients for browsers without fetch, in Chromium (Debian's), against real servers on Redis.

A page per jQuery version (1.12, 3.x, 4.x, installed from npm at test time)
whose window has no fetch and no AbortController, deleted before any script
runs, as in the old browsers these clients are for. On it, four clients
follow status streams: $(el).longPoll (events, GET sample), $.longPoll (its
Deferred, POST filter), longpoll.js's LongPoll (which must fall back to
XMLHttpRequest, GET sample) and the plain-jQuery loop docs/clients.md shows,
taken from there as it is. Each must get every status posted, in order, once:
first on a running server, then across a SIGKILL and restart of that server
(statuses posted meanwhile through a second server on the same Redis; the
sessions live in Redis), and must start a new session after a 410.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.chromium import chromium
from tests.conftest_support import free_port
from tests.npm import npm_modules
from tests.procs import ROOT, ServerProcess
from tests.redisproc import RedisProcess
from tests.streams_helpers import post, signup, unique

pytestmark = pytest.mark.slow  # servers, browsers or many connections: not in the quick loop

JQUERY = {"1.12.4": "jquery1", "3.7.1": "jquery3", "4.0.0": "jquery4"}
CLIENTS = ("element", "deferred", "plain", "readme")
WAIT_MS = 30_000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>legacy clients</title></head>
<body><ul id="feed"></ul>
<script src="/legacy-test/jquery.js"></script>
<script src="/web/jquery.longpoll.js"></script>
<script src="/web/longpoll.js"></script>
<script>
  // ES5, as such a page would be.
  var seen = {element: [], deferred: [], plain: [], readme: []};
  var states = {element: [], deferred: [], plain: []};
  var failures = [];
  var settings = {timeout: 2, quickStart: true, minBackoff: 100, maxBackoff: 1000};
  function collect(list) {
    return function (items) { for (var i = 0; i < items.length; i++) list.push(items[i].id); };
  }
  function options(name, extra) {
    return $.extend({onState: function (state) { states[name].push(state); }}, settings, extra);
  }

  $("#feed")
    .on("longpoll:items", function (event, items) { collect(seen.element)(items); })
    .on("longpoll:state", function (event, state) { states.element.push(state); })
    .on("longpoll:error", function (event, error) { failures.push("element: " + error.message); })
    .longPoll("/statuses/sample.json", $.extend({params: {identifier: CONFIG.prefix + "e", percent: 100}}, settings));

  var deferred = $.longPoll("/statuses/filter.json", options("deferred", {
    method: "POST", params: {identifier: CONFIG.prefix + "d", follow: CONFIG.author}
  })).progress(collect(seen.deferred)).fail(function (error) { failures.push("deferred: " + error.message); });

  var plain = new LongPoll("/statuses/sample.json", options("plain", {
    params: {identifier: CONFIG.prefix + "p", percent: 100},
    onItems: collect(seen.plain),
    onError: function (error) { failures.push("plain: " + error.message); }
  }));
  plain.start();

  // The README's loop keeps its key to itself: see the ones its polls send.
  var readmeKeys = [null];
  $.ajaxPrefilter(function (options, original) {
    if (original.data && original.data.identifier === CONFIG.prefix + "r") readmeKeys.push(original.data.key || null);
  });
  README_LOOP
  follow("/statuses/sample.json", {identifier: CONFIG.prefix + "r", percent: 100, timeout: 2}, collect(seen.readme));

  function keys() {
    return {element: $("#feed").data("longPoll").key, deferred: deferred.key, plain: plain.key,
            readme: readmeKeys[readmeKeys.length - 1]};
  }
</script>
</body></html>
"""


def readme_loop() -> str:
    """The plain-jQuery loop of docs/clients.md, without its example call."""
    found = re.search(r"<!-- jquery-loop -->\n```js\n(.*?)\n```", (ROOT / "docs" / "clients.md").read_text(),
                      re.S)
    assert found, "docs/clients.md has no <!-- jquery-loop --> block"
    return "\n".join(line for line in found.group(1).splitlines() if not line.startswith("follow("))


class Servers:
    """The server the page polls, on a fixed port so it can be killed and started again, and a
    publisher on the same Redis that keeps taking statuses while the polled one is down."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.port = free_port()
        self.polled = self._polled()
        self.publisher = ServerProcess("--redis", redis_url)
        self.client = httpx.Client(timeout=30)
        try:
            self.url = self.polled.wait_ready()
            self.client.base_url = self.publisher.wait_ready()
            self.author, self.token = signup(self.client)
        except BaseException:
            self.close()
            raise

    def _polled(self) -> ServerProcess:
        return ServerProcess("--redis", self.redis_url, "--port", str(self.port))

    def post(self, count: int) -> list[int]:
        return [post(self.client, self.token, f"@{self.author} says {unique('m')}")["id"] for _ in range(count)]

    def kill_polled(self) -> None:
        self.polled.kill()  # SIGKILL: its sessions are only in Redis now

    def start_polled(self) -> None:
        self.polled = self._polled()
        assert self.polled.wait_ready() == self.url

    def close(self) -> None:
        self.client.close()
        self.polled.stop()
        self.publisher.stop()


@pytest.fixture(scope="module")
def jquery_files() -> dict[str, bytes]:
    modules = npm_modules(*(f"{alias}@npm:jquery@{version}" for version, alias in JQUERY.items()))
    files = {}
    for version, alias in JQUERY.items():
        installed = json.loads((modules / alias / "package.json").read_text())["version"]
        assert installed == version
        files[version] = (modules / alias / "dist" / "jquery.js").read_bytes()
    return files


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    store = RedisProcess(durable=True)
    running = None
    try:
        running = Servers(store.url)
        yield running
    finally:
        if running is not None:
            running.close()
        store.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as context:
        yield context


def wait(page, errors: list[str], condition: str, arg: object = None) -> None:
    """Until the page's `condition` holds (bounded); a timeout shows what the clients were doing."""
    try:
        page.wait_for_function(condition, arg=arg, timeout=WAIT_MS)
    except Exception as exc:  # playwright's TimeoutError, or the page gone
        try:
            state = page.evaluate("({seen: seen, states: states, failures: failures, keys: keys()})")
        except Exception as gone:
            state = repr(gone)
        raise AssertionError(f"{condition!r} never held: {state}; page errors: {errors}") from exc


def wait_for_all(page, errors: list[str], count: int) -> None:
    wait(page, errors, "n => Object.keys(seen).every((name) => seen[name].length >= n)", count)


@pytest.mark.parametrize("version", list(JQUERY))
def test_jquery_plugin_and_longpoll_without_fetch_follow_a_stream_through_a_restart_and_a_410(
        version, jquery_files, servers, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script("delete window.fetch; delete window.AbortController;")
    config = json.dumps({"author": servers.author, "prefix": unique("v")})
    html = PAGE.replace("CONFIG", f"({config})").replace("README_LOOP", readme_loop())
    page.route(f"{servers.url}/legacy-test/page.html",
               lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.route(f"{servers.url}/legacy-test/jquery.js", lambda route: route.fulfill(
        status=200, content_type="application/javascript", body=jquery_files[version]))
    try:
        page.goto(f"{servers.url}/legacy-test/page.html")
        assert page.evaluate("[typeof fetch, typeof AbortController, jQuery.fn.jquery]") == \
            ["undefined", "undefined", version]
        # A key shows once its session exists: quickStart makes the first answer come at once; the README
        # loop's key shows when its second poll sends it.
        wait(page, errors, "(function (k) { return k.element && k.deferred && k.plain && k.readme; })(keys())")
        keys = page.evaluate("keys()")

        published = servers.post(4)
        wait_for_all(page, errors, 4)
        assert page.evaluate("seen") == {name: published for name in CLIENTS}

        servers.kill_polled()
        wait(page, errors, "['element', 'deferred', 'plain'].every(function (k) { "
                           "return states[k][states[k].length - 1] === 'waiting'; })")
        published += servers.post(4)  # while the polled server is down
        servers.start_polled()
        published += servers.post(2)
        wait_for_all(page, errors, len(published))
        assert page.evaluate("seen") == {name: published for name in CLIENTS}, "nothing lost or repeated"
        assert page.evaluate("keys()") == keys, "the same sessions, resumed from Redis"

        # The sessions vanish from Redis: the next polls get 410 and start new ones.
        gone = redis.Redis.from_url(servers.redis_url).delete(*(f"longpoll:session:{key}" for key in keys.values()))
        assert gone == len(CLIENTS)
        wait(page, errors, "old => { const k = keys(); "
                           "return Object.keys(k).every((name) => k[name] && k[name] !== old[name]); }", keys)
        later = servers.post(3)
        wait_for_all(page, errors, len(published) + len(later))
        assert page.evaluate("seen") == {name: published + later for name in CLIENTS}
        states = page.evaluate("states")
        for name in ("element", "deferred", "plain"):
            assert states[name].index("expired") < states[name].index("restarted"), states[name]
        assert page.evaluate("failures") == []
        assert not errors, errors
    finally:
        page.close()
