"""``longpoll tail``: print a status stream as it happens (the seeds' TCP client, over HTTP)."""

from __future__ import annotations

import datetime
import sys
from typing import Any, TextIO

import orjson

from .client import Client


def describe(item: Any) -> str:
    """One line for a person: time, author, message, and where."""
    if not isinstance(item, dict):
        return orjson.dumps(item).decode()
    if item.get("deleted"):
        return f"[deleted] status {item.get('id')}"
    when = datetime.datetime.fromtimestamp(float(item.get("posted", 0))).strftime("%H:%M:%S")
    where = f"  ({item['location']})" if item.get("location") else ""
    text = " ".join(str(item.get("message", "")).split())  # no control characters or newlines
    return f"[{when}] #{item.get('id')} @{item.get('login')}: {text}{where}"


def run(url: str, params: dict[str, Any], as_json: bool, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr, token: str | None = None, timeout: float = 25, max_items: int = 100,
        transport: str = "poll") -> int:
    filtered = any(params.get(name) for name in ("track", "follow", "locations"))
    path = "/statuses/filter.json" if filtered else "/statuses/sample.json"
    method = "POST" if filtered and transport == "poll" else "GET"  # a stream's filter goes in the query string
    if params.get("home"):  # the token's user's home stream
        path, method = "/statuses/home.json", "GET"
        params = {"identifier": params["identifier"], "backfill": params.get("backfill", 0)}
    elif not filtered:
        params = {"identifier": params["identifier"], "percent": params.get("percent", 100)}

    def retrying(reason: str, delay: float) -> None:
        print(f"longpoll tail: {reason}; retrying in {delay:.1f}s", file=err, flush=True)

    with Client(url, token) as client:
        for item in client.follow(path, {**params, "max": max_items}, method, timeout=timeout, on_retry=retrying,
                                  transport=transport):
            print(orjson.dumps(item).decode() if as_json else describe(item), file=out, flush=True)
    return 0
