"""Host names and client addresses: the loopback test, the Host allowlist, and the key a client is counted under."""

from __future__ import annotations

import functools
import ipaddress
import re

__all__ = ["LOOPBACK_HOSTS", "client_key", "host_allowed", "host_name", "is_loopback_host"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
"""Host header names that always reach this machine, whatever a DNS server says."""

_PORT = re.compile(r"^[0-9]{1,5}$")


def is_loopback_host(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only.

    Only literal loopback addresses and `localhost` count: any other name could resolve anywhere, and `0.0.0.0` or
    `::` listen on every interface.
    """
    name = host.strip().lower()
    if name == "localhost":
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def host_name(header: str) -> str | None:
    """The lower-cased host of a `Host` header without its port (IPv6 keeps its brackets), or None when the header
    is not a plain `host[:port]`."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and _PORT.match(rest[1:])):
        return None
    if not name or any(char in name for char in "/?#@ \t\\"):
        return None
    return name


@functools.lru_cache(maxsize=256)
def host_allowed(header: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a `Host` header names loopback or one of the configured `extra` names (ports ignored).

    This is the DNS-rebinding defence: a page on `evil.example` whose name re-resolves to 127.0.0.1 still sends
    `Host: evil.example`. Kept for the last headers seen: a client sends the same one on every request.
    """
    name = host_name(header)
    if name is None:
        return False
    if name in LOOPBACK_HOSTS:
        return True
    return any(host_name(allowed) == name for allowed in extra)


@functools.lru_cache(maxsize=1024)
def client_key(remote: str | None) -> str:
    """The identity a client is rate-limited and connection-capped under.

    An IPv4 address (IPv4-mapped IPv6 included) counts as itself; an IPv6 address counts as its /64, since one host
    commonly owns a whole /64 and could otherwise rotate addresses to escape the limits.
    """
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
