"""Which addresses a hub advertises and prints, and which a worker gathers on.

The rules (issue 12): a hub advertises, as ICE host candidates, the addresses it was
bound to, and prints one dialable URL per address for a wildcard bind; a worker gathers
on its own interfaces, and on loopback only when the hub is on loopback. Never the
hub's address on the worker: it could not bind it.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["dialable_hosts", "hub_hosts", "interface_addresses", "is_loopback", "worker_hosts"]


def interface_addresses(*, ipv4: bool = True, ipv6: bool = False) -> list[str]:
    """This machine's interface addresses, without loopback and IPv6 link-local ones."""
    import ifaddr  # aioice's own dependency; loaded only when asked

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                if ipv4 and not ipaddress.ip_address(ip.ip).is_loopback:
                    found.append(ip.ip)
            elif ipv6 and ip.ip[2] == 0 and not ipaddress.ip_address(ip.ip[0]).is_loopback:
                found.append(ip.ip[0])
    return list(dict.fromkeys(found))


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses."""
    ip = _ip(host)
    return host == "localhost" if ip is None else ip.is_loopback


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def hub_hosts(host: str) -> list[str] | None:
    """The addresses a hub bound to ``host`` advertises as host candidates: the ones it was bound to.

    A loopback bind stays on loopback; a specific address advertises itself; ``0.0.0.0``
    every IPv4 interface, then 127.0.0.1; ``::`` every IPv6 interface, then ::1 (asyncio
    binds ``::`` IPv6-only); a name, the addresses it resolves to.
    """
    if host in ("", "localhost"):
        return ["127.0.0.1"]
    ip = _ip(host)
    if ip is None:
        return _resolve(host) or None
    if ip.is_unspecified and ip.version == 4:
        return [*interface_addresses(), "127.0.0.1"]
    if ip.is_unspecified:
        return [*interface_addresses(ipv4=False, ipv6=True), "::1"]
    return [str(ip)]


def dialable_hosts(host: str) -> list[str]:
    """Addresses a client can dial a server bound to ``host`` at.

    One per address for a wildcard bind, non-loopback ones first (so the first is usable
    from other machines too); otherwise ``host`` itself.
    """
    ip = _ip(host)
    if ip is None or not ip.is_unspecified:
        return [host]
    return hub_hosts(host) or [host]


def worker_hosts(hub_host: str) -> list[str] | None:
    """Host-candidate addresses for a worker dialing ``hub_host``.

    Loopback only when the hub is on loopback (an address, or a name that resolves only to
    loopback); otherwise None: the worker's own interfaces, as aioice discovers them.
    """
    addresses = [hub_host.strip("[]")] if _ip(hub_host) is not None else _resolve(hub_host)
    if addresses and all(is_loopback(a) for a in addresses):
        return ["127.0.0.1"] if any(":" not in a for a in addresses) else ["::1"]
    return None
