"""Who a request comes from, for the per-address session cap.

The peer address is the client, unless the peer is a proxy the server was
told to trust (``longpoll.trusted_proxies``: addresses or networks).  Then
the client is the right-most address of ``X-Forwarded-For`` that is not a
trusted proxy: each trusted proxy appends the address it saw, so everything
to the left of the last untrusted one may be made up by the client.
CherryPy's own ``tools.proxy`` takes the left-most address, which any client
can forge, so it is not used here.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

import cherrypy

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=32)
def networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    """Parsed once per distinct setting; a bad entry is a ValueError naming it."""
    parsed = []
    for entry in trusted:
        try:
            parsed.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"longpoll.trusted_proxies: {entry!r} is not an address or network") from None
    return tuple(parsed)


def _trusted(address: str, nets: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The client's address: ``peer``, or what trusted proxies in front of it say."""
    if not trusted or not forwarded_for:
        return peer
    nets = networks(trusted)
    if not _trusted(peer, nets):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, nets):
            return hop
    return hops[0] if hops else peer


def request_address() -> str:
    """The current CherryPy request's client address."""
    request = cherrypy.serving.request
    trusted = request.config.get("longpoll.trusted_proxies") or ()
    if isinstance(trusted, str):
        trusted = (trusted,)
    return client_address(request.remote.ip or "", request.headers.get("X-Forwarded-For"), tuple(trusted))
