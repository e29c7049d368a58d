"""Subscriber URLs are tenant input: refuse loopback, private, link-local, metadata and other
non-public addresses (DESIGN.md §9).

Checked twice: at subscribe time on what the URL itself says (an address literal or a name
that is local by definition — no DNS in the request path), and at send time on every address
the name resolves to, the connection then going to the checked address (no rebinding between
the check and the connect). ``notification_private_targets = true`` turns both off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

REFUSED = ("The subscriber URL points to a loopback, private, link-local or metadata "
           "address; such targets are not allowed.")
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
               "metadata", "metadata.google.internal", "instance-data")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The target resolves to an address deliveries may not go to."""


def address_allowed(address: Address) -> bool:
    """Public unicast only (``is_global``), IPv4-mapped and 6to4/NAT64 forms unwrapped."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address_allowed(address.ipv4_mapped)
        if address.sixtofour is not None and not address_allowed(address.sixtofour):
            return False
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            return address_allowed(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def literal_refusal(url: str) -> str | None:
    """Why ``url`` may not be subscribed, judged from the URL alone; None if it may."""
    if url.lower().startswith("mailto:"):
        return None  # mail goes to the operator's SMTP server
    host = _host(url)
    if not host:
        return REFUSED
    host = host.rstrip(".").lower()
    if host in LOCAL_NAMES or host.endswith((".localhost", ".local", ".internal")):
        return REFUSED
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # inet_aton forms (``2130706433``, ``127.1``, ``0x7f.1``) are addresses too
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None if address_allowed(address) else REFUSED


async def resolve_checked(host: str, port: int) -> str:
    """One address of ``host`` to connect to, after checking every address it resolves to."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        if not address_allowed(address):
            raise TargetRefused(REFUSED)
        return str(address)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses or not all(address_allowed(a) for a in addresses):
        raise TargetRefused(REFUSED)
    return str(addresses[0])
