"""Where a request comes from: the client's address (X-Forwarded-For believed
from trusted proxies only) and its User-Agent."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

from engage_adapters.settings import Network
from engage_core.model import Client


def client_address(
    connection: ASGIConnection[Any, Any, Any, Any], trusted_proxies: tuple[Network, ...]
) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    nearest address in X-Forwarded-For that is not one (each proxy appends the
    address it was reached from, so only the entries after the last untrusted
    one are believed; a client cannot choose its address by sending the header)."""
    peer = connection.client.host if connection.client else "unknown"
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return peer
    hops = [
        hop.strip()
        for header in connection.headers.getall("x-forwarded-for", [])
        for hop in header.split(",")
    ]
    address = peer
    for hop in reversed(hops):
        try:
            parsed = ipaddress.ip_address(hop)
        except ValueError:
            return address  # a proxy wrote no address here: stop at the last known one
        address = str(parsed)
        if not _is_trusted(address, trusted_proxies):
            return address
    return address


def client_of(
    connection: ASGIConnection[Any, Any, Any, Any], trusted_proxies: tuple[Network, ...]
) -> Client:
    """Where the request comes from, for sessions and the activity log: the address
    as ``client_address`` finds it, and the User-Agent header (trimmed)."""
    user_agent = connection.headers.get("user-agent")
    return Client(
        ip=client_address(connection, trusted_proxies),
        user_agent=_as_sent(user_agent) if user_agent is not None else None,
    )


def _as_sent(header: str) -> str:
    """A header's text as the client wrote it: the bytes arrive read as Latin-1,
    but a client that sends anything else sends UTF-8 (else they stay Latin-1)."""
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header


def _is_trusted(address: str, trusted_proxies: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted_proxies)
