"""WebRTC signaling: offer/answer over HTTP (aiohttp), an in-process pairing, and loopback ICE.

**No STUN by default.** aiortc contacts a public STUN server unless it is given
``iceServers=[]``; every peer connection made here gets the ICE servers passed in
(none unless asked, e.g. ``--ice-server``).

**Loopback ICE.** aioice gathers host candidates from the machine's interfaces and
skips 127.0.0.1, so two peers on one machine would talk over its LAN address. The
:func:`ice_host_addresses` context restricts host candidates to the addresses given
while a peer connection gathers; a hub bound to 127.0.0.1 uses it, and so do the tests,
the demo and the benchmarks. It replaces aioice's ``get_host_addresses`` once with a
wrapper that consults a context variable, so concurrent connections with different
settings do not interfere and connections outside the context behave as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ._background import background
from .transports import TransportLimits
from .transports.datachannel import DataChannelTransport

__all__ = [
    "LABEL",
    "accept_offer",
    "datachannel_pair",
    "ice_host_addresses",
    "ice_hosts_for",
    "new_peer_connection",
    "open_datachannel",
]

#: The DataChannel label rxchannel opens.
LABEL = "rxchannel"

_HOSTS: ContextVar[tuple[str, ...] | None] = ContextVar("rxchannel_ice_hosts", default=None)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _HOSTS.get()
    if hosts is None:
        return list(_original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    return [h for h in hosts if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]


@contextlib.contextmanager
def ice_host_addresses(hosts: Sequence[str] | None) -> Iterator[None]:
    """Within this context, peer connections gather host candidates only on ``hosts``.

    ``None`` leaves aioice's own discovery in place.
    """
    aioice.ice.get_host_addresses = _get_host_addresses
    token = _HOSTS.set(tuple(hosts) if hosts is not None else None)
    try:
        yield
    finally:
        _HOSTS.reset(token)


def ice_hosts_for(host: str) -> list[str] | None:
    """Host candidates for a peer bound to, or dialing, ``host``: loopback stays on loopback.

    A wildcard bind (0.0.0.0, ::) gathers on every interface; a specific address on itself.
    """
    if host in ("localhost", ""):
        return ["127.0.0.1"]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: let aioice discover
    if ip.is_loopback:
        return ["127.0.0.1"] if ip.version == 4 else ["::1"]
    if ip.is_unspecified:
        return None
    return [host]


def new_peer_connection(ice_servers: Sequence[str] = ()) -> RTCPeerConnection:
    """An aiortc peer connection with exactly these ICE servers (none by default: no STUN)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers]))


async def _set_local(pc: RTCPeerConnection, description: RTCSessionDescription, hosts: Sequence[str] | None) -> None:
    with ice_host_addresses(hosts):
        await pc.setLocalDescription(description)  # gathers candidates (aiortc waits for completion)


async def _wait_open(channel: RTCDataChannel, timeout: float) -> None:
    if channel.readyState == "open":
        return
    opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_open() -> None:
        if not opened.done():
            opened.set_result(None)

    def on_close() -> None:
        if not opened.done():
            opened.set_exception(ConnectionError("the DataChannel closed before it opened"))

    channel.once("open", on_open)
    channel.once("close", on_close)
    async with asyncio.timeout(timeout):
        await opened


async def open_datachannel(
    send_offer: Callable[[dict[str, str]], Any],
    *,
    ice_servers: Sequence[str] = (),
    hosts: Sequence[str] | None = ("127.0.0.1",),
    limits: TransportLimits | None = None,
    timeout: float = 20.0,
) -> DataChannelTransport:
    """The offering side: create a channel, send the offer via ``send_offer`` (which returns
    the answer as ``{"sdp", "type"}``), and return the open transport."""
    pc = new_peer_connection(ice_servers)
    try:
        channel = pc.createDataChannel(LABEL, ordered=True)
        await _set_local(pc, await pc.createOffer(), hosts)
        answer = await send_offer({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await _wait_open(channel, timeout)
    except BaseException:
        await pc.close()
        raise
    return DataChannelTransport(channel, pc, limits)


async def accept_offer(
    offer: dict[str, str],
    on_transport: Callable[[DataChannelTransport], object],
    *,
    ice_servers: Sequence[str] = (),
    hosts: Sequence[str] | None = ("127.0.0.1",),
    limits: TransportLimits | None = None,
    timeout: float = 20.0,
) -> dict[str, str]:
    """The answering side: answer ``offer`` and call ``on_transport`` once the peer's channel is open.

    Raises:
        ValueError: the offer is not a valid SDP offer.
    """
    if not isinstance(offer, dict) or offer.get("type") != "offer" or not isinstance(offer.get("sdp"), str):
        raise ValueError('expected a JSON object {"type": "offer", "sdp": "..."}')
    pc = new_peer_connection(ice_servers)
    loop = asyncio.get_running_loop()
    # a peer that posts an offer and never connects must not leave a connection behind
    reaper = loop.call_later(timeout, lambda: background(pc.close()))

    @pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        async def ready() -> None:
            try:
                await _wait_open(channel, timeout)
                transport = DataChannelTransport(channel, pc, limits)
            except (ConnectionError, TimeoutError, ValueError):
                await pc.close()
                return
            reaper.cancel()
            on_transport(transport)

        background(ready())

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await _set_local(pc, await pc.createAnswer(), hosts)
    except BaseException:
        reaper.cancel()
        await pc.close()
        raise

    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


async def datachannel_pair(
    *, limits: TransportLimits | None = None, hosts: Sequence[str] | None = ("127.0.0.1",)
) -> tuple[DataChannelTransport, DataChannelTransport]:
    """Two real aiortc peer connections in this process, joined over loopback ICE.

    Returns (offerer's transport, answerer's transport).
    """
    answered: asyncio.Future[DataChannelTransport] = asyncio.get_running_loop().create_future()

    async def exchange(offer: dict[str, str]) -> dict[str, str]:
        return await accept_offer(offer, answered.set_result, hosts=hosts, limits=limits)

    offerer = await open_datachannel(exchange, hosts=hosts, limits=limits)
    async with asyncio.timeout(20):
        answerer = await answered
    return offerer, answerer


def offer_json(body: bytes) -> dict[str, str]:
    """Parse an HTTP offer body. Raises ValueError with a message for the client."""
    try:
        offer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the offer is not JSON") from None
    if not isinstance(offer, dict):
        raise ValueError('expected a JSON object {"type": "offer", "sdp": "..."}')
    return offer
