"""A Python client of a longpoll server: what the CLI's post and tail use."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from redis.backoff import EqualJitterBackoff

DEFAULT_URL = "http://127.0.0.1:8080"

RETRYABLE_4XX = frozenset({408, 409, 425, 429})
"""Answers worth polling again after a wait, as the browser client (web/longpoll.js)
treats them: a proxy's timeout, a poll another process answered at the same
moment (durable sessions), too early, too many."""


class ServerError(Exception):
    """The server answered an error (its JSON message is the text), or could not be reached."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code  # the JSON error code, e.g. "generator_failed"


def _answer(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    message = body.get("message") if isinstance(body, dict) else response.text[:200]
    retry = response.headers.get("Retry-After")
    raise ServerError(f"{response.status_code}: {message}", response.status_code,
                      float(retry) if retry and retry.isdigit() else None,
                      body.get("error") if isinstance(body, dict) else None)


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30):
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.token = token

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.token:
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {self.token}"
        try:
            return _answer(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach {self.http.base_url}: {exc}") from None

    def signup(self, login: str, name: str | None = None) -> dict[str, Any]:
        return self.request("POST", "/users", json={"login": login, **({"name": name} if name else {})})

    def post(self, message: str, location: str | None = None) -> dict[str, Any]:
        return self.request("POST", "/statuses", json={"message": message,
                                                       **({"location": location} if location else {})})

    def delete(self, status_id: int) -> dict[str, Any]:
        return self.request("DELETE", f"/statuses/{status_id}")

    def follow_user(self, login: str) -> dict[str, Any]:
        return self.request("POST", f"/users/{login}/follow")

    def unfollow_user(self, login: str) -> dict[str, Any]:
        return self.request("DELETE", f"/users/{login}/follow")

    def home(self, page: int = 1, count: int | None = None) -> dict[str, Any]:
        """A page of the token's user's home timeline, newest first."""
        return self.request("GET", "/home", params={"page": page, **({"count": count} if count else {})})

    def follow(self, path: str, params: dict[str, Any], method: str = "GET", timeout: float = 25,
               on_retry: Callable[[str, float], None] | None = None) -> Iterator[Any]:
        """Every item of a long-poll stream, for as long as it lasts.

        Carries key and cursor; retries network errors, 5xx and 429 with
        jittered exponential backoff (at least ``Retry-After``), and so the
        4xx answers in :data:`RETRYABLE_4XX`; starts a new session on 410 (the
        server restarted and forgot it); raises ServerError on any other error,
        which retrying cannot fix, and on ``generator_failed`` (the session's
        generator raised: a new session would raise again).  The backoff only
        starts over once a session answers a second time, so a session that
        keeps failing right after it is made waits longer each round.
        """
        if not 0 <= timeout <= 60:
            raise ValueError(f"timeout must be 0-60 seconds, not {timeout!r}")
        key = cursor = None
        backoff = EqualJitterBackoff(cap=30.0, base=0.5)
        failures = 0
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}  # the home stream needs it
        while True:
            sent = {**params, "timeout": timeout, **({"key": key, "cursor": cursor} if key else {})}
            try:
                if method == "GET":
                    response = self.http.get(path, params=sent, timeout=timeout + 10, headers=headers)
                else:
                    response = self.http.post(path, json=sent, timeout=timeout + 10, headers=headers)
                body = _answer(response)
            except (httpx.TransportError, ServerError) as exc:
                status = getattr(exc, "status", None)
                if getattr(exc, "code", None) == "generator_failed":
                    raise
                if status == 410:
                    key = cursor = None
                    delay = backoff.compute(failures) if failures else 0.0  # a first restart at once
                    failures += 1
                    if on_retry:
                        on_retry("session expired; starting a new one", delay)
                    time.sleep(delay)
                    continue
                if status is not None and status < 500 and status not in RETRYABLE_4XX:
                    raise
                failures += 1
                delay = max(backoff.compute(failures), getattr(exc, "retry_after", None) or 0)
                if on_retry:
                    on_retry(str(exc), delay)
                time.sleep(delay)
                continue
            if key is not None and body["key"] == key:
                failures = 0  # the same session answered again: it is sound
            key, cursor = body["key"], body["cursor"]
            yield from body["items"]
            if body["state"] == "done":
                return
            if body.get("retry_ms"):
                time.sleep(body["retry_ms"] / 1000)
