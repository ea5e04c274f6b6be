"""A Python client of a longpoll server: what the CLI's post and tail use."""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class ServerError(Exception):
    """The server answered an error (its JSON message is the text), or could not be reached."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


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
                      float(retry) if retry and retry.isdigit() else None)


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
