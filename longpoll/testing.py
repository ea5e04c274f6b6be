"""Testing an app's long-poll endpoints: the engine they need, and a client that polls as the browser client does.

:func:`engine` runs what an endpoint needs (the longpoll plugin: the
broker's reader, expiry; the engine's own start and stop) without
CherryPy's HTTP server, so a test binds no port (8080 may be taken, tests may
run in parallel) and the engine's failure to bind cannot end the test
process.  ``longpoll.pytest_plugin`` gives it as the ``longpoll_engine``
fixture.

``Client`` follows a session's key and cursor, collects the items, and
raises for an error answer.  It polls an endpoint in this process (the
``json_yield`` handler itself: no server, no sockets) or over HTTP (a URL),
with the same calls::

    from longpoll.testing import Client, engine

    def test_news_reaches_a_poll():
        with engine():
            client = Client(Root().news)        # or Client("http://127.0.0.1:8080/news")
            client.poll()                       # the first poll makes the session
            broker.publish("news", {"title": "hi"})
            assert client.take(1) == [{"title": "hi"}]

In this process no CherryPy request exists, so the client makes one for
each poll: ``login=`` is its ``cherrypy.request.login`` and
``cherrypy_session=`` its ``cherrypy.session`` (a dict).  A ``bind=`` or a
generator that reads either without the test having given it raises
:class:`NoRequest` saying so, instead of tying the session to ``None``.
Over HTTP the client sends ``headers=``, basic ``auth=`` (or the URL's
``user:password@``) and keeps cookies in ``cookies`` (a
``http.cookiejar.CookieJar``), so it logs in as a browser does.
"""

from __future__ import annotations

import base64
import contextlib
import http.cookiejar
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import cherrypy
import orjson
from cherrypy import _cprequest
from cherrypy.lib import httputil
from cherrypy.process import wspbus

from . import plugin
from .endpoint import endpoint_of
from .errors import Expired, LongPollError
from .params import NO_BODY

__all__ = ["Client", "PollError", "NoRequest", "engine", "settle"]


@contextlib.contextmanager
def engine(bus: wspbus.Bus | None = None) -> Iterator[wspbus.Bus]:
    """Start the engine with the longpoll plugin, and stop (exit) it at the end, leaving out what a test must not run:
    CherryPy's HTTP server (it would bind ``server.socket_port``, 8080 by default, and a port in use makes the
    engine end the whole process with status 70) and the autoreloader (it would restart the test run when a
    file changes).  Both are put back afterwards.  An engine already running is left as it is."""
    bus = bus if bus is not None else cherrypy.engine
    if bus.state in (wspbus.states.STARTED, wspbus.states.STARTING):
        yield bus
        return
    left_out = [p for p in (cherrypy.server, getattr(bus, "autoreload", None))
                if p is not None and bus is cherrypy.engine and p.start in bus.listeners.get("start", ())]
    for part in left_out:
        part.unsubscribe()
    plugin.ensure(bus)
    try:
        bus.start()
        yield bus
    finally:
        bus.exit()  # stopped, and said so: CherryPy warns at the interpreter's end of an engine merely stopped
        for part in left_out:
            part.subscribe()


class PollError(Exception):
    """An answer other than 200 (410 raises ``longpoll.Expired``)."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(f"{status} {body.get('error')}: {body.get('message')}")
        self.status = status
        self.body = body


class NoRequest(PollError):
    """In this process, the endpoint's ``bind=`` or its generator read the CherryPy request or session, which the
    test did not give (``Client(handler, login=..., cherrypy_session=...)``)."""


_UNSET: Any = object()


class _Asked(LongPollError):
    """What the client's stand-in request raises when read for something the test did not give."""

    status = 500
    code = "no_request"


class _Request(_cprequest.Request):
    """The request an in-process poll runs under: what the test gave, and nothing pretended."""

    def __init__(self, address: str, headers: Mapping[str, str], login: Any):
        super().__init__(httputil.Host("127.0.0.1", 80, ""), httputil.Host(address, 0, ""))
        self.headers = httputil.HeaderMap(headers)
        self._login = login

    @property
    def login(self) -> Any:
        if self._login is _UNSET:
            raise _Asked("the endpoint read cherrypy.request.login (in bind= or its generator), and no CherryPy "
                         "request exists in this process: give the test's user as Client(handler, login=...), "
                         "or poll over HTTP")
        return self._login

    @login.setter
    def login(self, value: Any) -> None:
        self._login = value


class _NoSession:
    """``cherrypy.session`` when the test gave none: reading it says what to give."""

    def __getattr__(self, name: str) -> Any:
        raise _Asked("the endpoint read cherrypy.session, and no CherryPy session exists in this process: give "
                     "it as Client(handler, cherrypy_session={...}), or poll over HTTP")

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __contains__(self, name: str) -> bool:
        return bool(self.__getattr__(name))


@contextlib.contextmanager
def _serving(request: _Request, session: Any) -> Iterator[None]:
    """This thread's CherryPy request and session for one poll, and whatever was there before afterwards."""
    if not hasattr(cherrypy, "session"):
        cherrypy.session = cherrypy._ThreadLocalProxy("session")  # as CherryPy's sessions tool makes it
    saved = dict(vars(cherrypy.serving))
    cherrypy.serving.load(request, _cprequest.Response())
    cherrypy.serving.session = session
    try:
        yield
    finally:
        vars(cherrypy.serving).clear()
        vars(cherrypy.serving).update(saved)


class Client:
    """One client of one endpoint: its session's key and cursor, and every item it received, in order.

    ``target`` is a ``json_yield`` handler (polled in this process) or the endpoint's URL; ``args`` are the
    path segments a handler takes positionally (in a URL they are in its path); ``params`` (and any other
    keyword) the first poll's own parameters.  In this process, ``login`` and ``cherrypy_session`` are the
    request's; over HTTP, ``headers``, ``auth`` (user, password) and ``cookies`` are sent with every request.
    """

    def __init__(self, target: Any, *, args: tuple[str, ...] = (), address: str = "127.0.0.1",
                 headers: Mapping[str, str] | None = None, auth: tuple[str, str] | None = None,
                 cookies: http.cookiejar.CookieJar | None = None, login: Any = _UNSET,
                 cherrypy_session: dict[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 **more_params: Any):
        self.args = args
        self.address = address
        self.params = {**(params or {}), **more_params}
        self.headers = dict(headers or {})
        self.login = login
        self.cherrypy_session = cherrypy_session
        self.cookies = cookies if cookies is not None else http.cookiejar.CookieJar()
        if isinstance(target, str):
            target, found = _without_userinfo(target)
            auth = auth or found
            self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        self.target = target
        self.key: str | None = None
        self.cursor: str | None = None
        self.items: list[Any] = []
        self.gaps = 0
        self.dropped = 0
        self.state: str | None = None

    def poll(self, timeout: float = 0.0, max: int | None = None) -> dict[str, Any]:
        """One poll (the first makes the session); its answer's body.  Raises ``Expired`` on 410 (the key is
        forgotten, so the next poll starts anew) and :class:`PollError` on any other error."""
        asked: dict[str, Any] = {"timeout": timeout}
        if max is not None:
            asked["max"] = max
        if self.key is None:
            asked.update(self.params)
        else:
            asked.update(key=self.key, cursor=self.cursor)
        status, body = self._send(asked)
        if status == 410:
            self.key = self.cursor = None
            raise Expired(body.get("message", "expired"))
        if status != 200:
            raise (NoRequest if body.get("error") == _Asked.code else PollError)(status, body)
        self.key, self.cursor, self.state = body["key"], body["cursor"], body["state"]
        self.items.extend(body["items"])
        self.gaps += bool(body.get("gap"))
        self.dropped = max_of(self.dropped, body.get("dropped", 0))
        return body

    def take(self, count: int, timeout: float = 10.0, poll_timeout: float = 1.0) -> list[Any]:
        """Poll until ``count`` more items arrived (or the session is done); those items.  Waits at most
        ``timeout`` seconds, then raises AssertionError saying how many came."""
        start = len(self.items)
        deadline = time.monotonic() + timeout
        while len(self.items) - start < count and self.state != "done":
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.items) - start} of {count} items arrived within {timeout} s")
            self.poll(timeout=min(poll_timeout, left))
        return self.items[start:start + count]

    def request(self, method: str, path: str, *, form: Mapping[str, Any] | None = None, json_body: Any = None,
                timeout: float = 30.0) -> tuple[int, bytes]:
        """Another request to the app over HTTP (a login form, a publish), with this client's headers, auth and
        cookies: its status and body.  ``path`` is relative to the endpoint's URL (``/login``: its root)."""
        if not isinstance(self.target, str):
            raise TypeError("request() is for a client over HTTP")
        data, headers = None, dict(self.headers)
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = orjson.dumps(json_body)
            headers["Content-Type"] = "application/json"
        url = urllib.parse.urljoin(self.target, path)
        return self._open(urllib.request.Request(url, data=data, headers=headers, method=method), timeout)

    def _send(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if isinstance(self.target, str):
            return self._http(params)
        session = self.cherrypy_session if self.cherrypy_session is not None else _NoSession()
        with _serving(_Request(self.address, self.headers, self.login), session):
            status, _headers, body = endpoint_of(self.target).answer(
                "GET", self.args, {k: str(v) for k, v in params.items()}, {}, NO_BODY, lambda: self.address)
        if not isinstance(body, bytes):
            raise TypeError("Client polls; streams are read over HTTP")
        return status, orjson.loads(body)

    def _http(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = self.target
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{url}{'&' if '?' in url else '?'}{query}",
                                         headers={"Accept": "application/json", **self.headers})
        status, raw = self._open(request, float(params.get("timeout", 0)) + 30)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"error": "not_json", "message": raw[:200].decode("utf-8", "replace")}

    def _open(self, request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def _without_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@`` (urllib cannot open it so), and those as basic auth."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    auth = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), auth


def max_of(a: int, b: int) -> int:
    return a if a >= b else b


def settle(broker: Any, timeout: float = 10.0) -> None:
    """Wait until the broker's hub has read everything published so far, so a poll with ``timeout=0`` sees it
    (the hub reads the log on a thread of its own)."""
    target = broker.log.tail()
    deadline = time.monotonic() + timeout
    from .backends.base import order

    while broker.hub.position is None or order(broker.hub.position) < order(target):
        if time.monotonic() > deadline:
            raise AssertionError(f"the hub did not read up to {target} within {timeout} s")
        time.sleep(0.005)
