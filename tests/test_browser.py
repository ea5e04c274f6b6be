"""End to end in headless Chromium (Debian's, never a downloaded one): the demo page
on a live server shows a posted status in the feed and as a blip on the map, and
both go when the status is deleted. A screenshot is kept in artifacts/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chromium import chromium
from tests.procs import ROOT, ServerProcess
from tests.streams_helpers import unique

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
