"""Where an endpoint's URL leads, and whether events may go there.

Checked when an endpoint is registered and again before every request: a name that
resolved to a public address at registration may resolve to 127.0.0.1 later (DNS
rebinding). The request then goes to the address checked here (the URL's host is kept
for ``Host`` and TLS), so the name is not resolved a second time in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


class TargetRefused(Exception):
    """The URL may not receive events; the message says why (safe to show admins)."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    """The URL with the checked address in place of the host name."""
    host_header: str
    sni_hostname: str | None
    """For https: the name the certificate must carry."""


def check_url_shape(url: str, *, require_https: bool) -> None:
    """What can be said without DNS: scheme, host, port, no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("The URL cannot be parsed.") from exc
    if parts.scheme not in ("https", "http"):
        raise TargetRefused("The URL must be http or https.")
    if require_https and parts.scheme != "https":
        raise TargetRefused("The URL must be https in production.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL must not carry credentials.")
    if port == 0:
        raise TargetRefused("The URL's port must not be 0.")


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # is_global is False for private, loopback, link-local, shared (100.64/10),
    # reserved and unspecified ranges alike; multicast is refused on its own.
    return not address.is_global or address.is_multicast


async def resolve(url: str, *, require_https: bool, allow_private: bool) -> Target:
    check_url_shape(url, require_https=require_https)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"The host {host!r} does not resolve.") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"The host {host!r} does not resolve.")
    if not allow_private:
        refused = [str(a) for a in addresses if _refused_address(a)]
        if refused:
            raise TargetRefused(
                f"The host {host!r} resolves to a private, loopback or link-local "
                f"address ({refused[0]})."
            )
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rpartition("@")[2]
    return Target(
        url=pinned,
        host_header=host_header,
        sni_hostname=host if parts.scheme == "https" else None,
    )
