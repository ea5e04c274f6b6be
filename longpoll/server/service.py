"""The service endpoints every longpoll server has: /healthz, /stats, /metrics."""

from __future__ import annotations

import cherrypy

from .. import stats as counters
from ..responses import json_body
from .metrics import prometheus_text


class Service:
    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def healthz(self) -> bytes:
        figures = counters.snapshot()
        if not figures["backend_available"]:
            return json_body(503, {"status": "unavailable", "message": "the backend is unreachable"},
                             {"Retry-After": "2"})
        return json_body(200, {"status": "ok"})

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def stats(self) -> bytes:
        return json_body(200, counters.snapshot())

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def metrics(self) -> bytes:
        cherrypy.response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
        return prometheus_text()
