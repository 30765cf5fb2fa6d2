"""ICE candidate gathering under rxchannel's control: which host addresses, which UDP ports,
and why a TURN relay could not be had.

aioice has no parameter for any of these, so this module installs three hooks, once, when
it is imported; each consults the context variable that :func:`gathering` sets, and does
nothing outside it (so other libraries, and peer connections gathered outside the
context, see aioice unchanged; concurrent gatherings with different settings do not
interfere, because asyncio tasks copy the context they are created in):

* ``aioice.ice.get_host_addresses`` is wrapped: inside the context, host candidates are
  gathered only on :attr:`Gathering.hosts` (aioice otherwise takes every interface but
  127.0.0.1).
* ``create_datagram_endpoint`` of ``asyncio.BaseEventLoop`` and, when it is installed,
  of ``uvloop.Loop`` (which does not derive from it) is wrapped: inside the context, a
  UDP socket asked for with ``local_addr=(address, 0)`` (how aioice binds a host
  candidate) is bound to a free port of :attr:`Gathering.udp_ports` instead of an
  ephemeral one. Sockets with a fixed port, a remote address (TURN's own client socket)
  or a ``sock=`` argument are left alone. When every port of the range is taken, the
  bind fails with ``EADDRINUSE`` and the failure is recorded.
* ``aioice.ice.relayed_candidate`` is wrapped to record why a TURN allocation failed
  (``401 Unauthorized``, no answer ...), which aioice otherwise drops silently: failure
  messages name it.

These are the only process-wide hooks rxchannel installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import socket
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aioice.ice

__all__ = ["Gathering", "gathering", "ice_host_addresses"]


@dataclass
class Gathering:
    """The settings of one gathering, and what went wrong during it.

    Attributes:
        hosts: host-candidate addresses (None: every interface, as aioice would).
        udp_ports: ``(lo, hi)``: host candidates bind inside this range (None: any port).
        failures: what could not be had (a TURN server's refusal, a full port range).
    """

    hosts: tuple[str, ...] | None = None
    udp_ports: tuple[int, int] | None = None
    failures: list[str] = field(default_factory=list)


_GATHERING: ContextVar[Gathering | None] = ContextVar("rxchannel_gathering", default=None)

# ------------------------------------------------------------------ hook 1: host addresses

_aioice_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    current = _GATHERING.get()
    if current is None or current.hosts is None:
        return list(_aioice_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    return [h for h in current.hosts if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]


aioice.ice.get_host_addresses = _get_host_addresses

# ------------------------------------------------------------------ hook 2: UDP port range


def _bind_in_range(host: str, lo: int, hi: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    count = hi - lo + 1
    start = random.randrange(count)  # spread concurrent binds over the range
    for i in range(count):
        port = lo + (start + i) % count
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        return sock
    raise OSError(errno.EADDRINUSE, f"no free UDP port in {lo}-{hi} on {host} (--udp-ports): widen the range")


def _hook_datagram_endpoints(loop_class: Any) -> None:
    """Wrap ``loop_class.create_datagram_endpoint`` to bind host candidates inside the port range."""
    original = loop_class.create_datagram_endpoint

    async def create_datagram_endpoint(
        self: Any, protocol_factory: Any, local_addr: Any = None, remote_addr: Any = None, **kwargs: Any
    ) -> Any:
        current = _GATHERING.get()
        if (
            current is not None
            and current.udp_ports is not None
            and local_addr is not None
            and local_addr[1] == 0
            and remote_addr is None
            and kwargs.get("sock") is None
        ):
            try:
                sock = _bind_in_range(local_addr[0], *current.udp_ports)
            except OSError as exc:
                current.failures.append(str(exc.strerror or exc))
                raise
            return await original(self, protocol_factory, sock=sock, **kwargs)
        return await original(self, protocol_factory, local_addr, remote_addr, **kwargs)

    loop_class.create_datagram_endpoint = create_datagram_endpoint


_hook_datagram_endpoints(asyncio.BaseEventLoop)
try:
    import uvloop
except ImportError:  # Windows, or not installed: asyncio's loops only
    pass
else:
    _hook_datagram_endpoints(uvloop.Loop)

# ------------------------------------------------------------------ hook 3: why a relay failed

_aioice_relayed_candidate = aioice.ice.relayed_candidate


async def _relayed_candidate(**kwargs: Any) -> Any:
    server = kwargs.get("turn_server") or ("?", 0)
    try:
        return await _aioice_relayed_candidate(**kwargs)
    except asyncio.CancelledError:
        _record(f"TURN server {server[0]}:{server[1]}: no allocation within aioice's 5 s (unreachable?)")
        raise
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        if "401" in reason or "403" in reason:
            reason += ": wrong or expired TURN credentials"
        _record(f"TURN server {server[0]}:{server[1]}: {reason}")
        raise


def _record(message: str) -> None:
    current = _GATHERING.get()
    if current is not None:
        current.failures.append(message)


aioice.ice.relayed_candidate = _relayed_candidate

# ------------------------------------------------------------------ the context


@contextlib.contextmanager
def gathering(hosts: Sequence[str] | None = None, udp_ports: tuple[int, int] | None = None) -> Iterator[Gathering]:
    """Within this context, peer connections gather candidates with these settings.

    Yields the :class:`Gathering`, whose ``failures`` fill in as gathering goes.
    """
    current = Gathering(tuple(hosts) if hosts is not None else None, udp_ports)
    token = _GATHERING.set(current)
    try:
        yield current
    finally:
        _GATHERING.reset(token)


@contextlib.contextmanager
def ice_host_addresses(hosts: Sequence[str] | None) -> Iterator[None]:
    """Within this context, peer connections gather host candidates only on ``hosts``.

    ``None`` leaves aioice's own discovery in place.
    """
    with gathering(hosts):
        yield
