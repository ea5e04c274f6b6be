"""What a stream endpoint reads from its request: the identifier a session is bound to, the bearer token,
text parameters, and nothing else (an unknown parameter is a 400)."""

from __future__ import annotations

from typing import Any

import cherrypy

from ... import BadParameter, identifier, single
from .store import bad_token


def bound_identifier(params: dict[str, Any]) -> str:
    return identifier({"identifier": params.get("identifier")})


def bearer_token(header: str | None = None) -> str:
    """The token of an ``Authorization: Bearer`` header (by default the CherryPy request's)."""
    if header is None:
        header = cherrypy.serving.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise bad_token()
    return token.strip()


def required_text(params: dict[str, Any], name: str, longest: int) -> str:
    value = optional_text(params, name, longest)
    if value is None:
        raise BadParameter(name, "required")
    return value


def optional_text(params: dict[str, Any], name: str, longest: int) -> str | None:
    value = single(params, name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadParameter(name, "must be text")
    if len(value) > longest:
        raise BadParameter(name, f"at most {longest} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter(name, "must be valid Unicode text") from None
    return value


def no_more(params: dict[str, Any]) -> None:
    for name in params:
        raise BadParameter(name, "unknown parameter")
