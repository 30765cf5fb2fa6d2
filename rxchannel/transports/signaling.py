"""WebRTC signaling: offer/answer over HTTP (aiohttp), an in-process pairing, and ICE host addresses.

**No STUN by default.** aiortc contacts a public STUN server unless it is given
``iceServers=[]``; every peer connection made here gets the ICE servers passed in
(none unless asked, e.g. ``--ice-server``).

**ICE host addresses.** aioice gathers host candidates from every interface and skips
127.0.0.1, so two peers on one machine would talk over its LAN address. While a peer
connection gathers inside :func:`ice_host_addresses`, its host candidates are restricted
to the addresses given. aioice has no parameter for this, so this module replaces
aioice's ``get_host_addresses`` once, when it is imported, with a wrapper that consults
a context variable: outside the context (and in every other library) aioice behaves as
before, and concurrent connections with different settings do not interfere. It is the
one process-wide hook rxchannel installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import aiohttp
import aioice.ice
from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ._base import TransportLimits, TransportOptions
from .datachannel import DataChannelTransport
from .http import HttpListener

__all__ = [
    "LABEL",
    "Answerer",
    "WebRtcListener",
    "datachannel_pair",
    "dial",
    "dial_webrtc",
    "ice_host_addresses",
    "ice_hosts_for",
    "listen",
    "listen_webrtc",
    "new_peer_connection",
    "open_datachannel",
]

#: The DataChannel label rxchannel opens.
LABEL = "rxchannel"

_HOSTS: ContextVar[tuple[str, ...] | None] = ContextVar("rxchannel_ice_hosts", default=None)
_aioice_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _HOSTS.get()
    if hosts is None:
        return list(_aioice_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    return [h for h in hosts if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]


aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def ice_host_addresses(hosts: Sequence[str] | None) -> Iterator[None]:
    """Within this context, peer connections gather host candidates only on ``hosts``.

    ``None`` leaves aioice's own discovery in place.
    """
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
    send_offer: Callable[[dict[str, str]], Awaitable[dict[str, Any]]],
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


class Answerer:
    """The answering side: answers offers, and owns every peer connection until its channel opens.

    A peer that posts an offer and never connects does not leave a connection behind: it is
    closed after ``timeout`` seconds, and :meth:`close` closes every one still pending.
    """

    def __init__(
        self,
        on_transport: Callable[[DataChannelTransport], object],
        *,
        ice_servers: Sequence[str] = (),
        hosts: Sequence[str] | None = ("127.0.0.1",),
        limits: TransportLimits | None = None,
        timeout: float = 20.0,
    ):
        self.on_transport = on_transport
        self.ice_servers = tuple(ice_servers)
        self.hosts = hosts
        self.limits = limits
        self.timeout = timeout
        #: peer connections answered whose channel has not opened yet
        self.pending: set[RTCPeerConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop(self, pc: RTCPeerConnection) -> None:
        if pc in self.pending:
            self.pending.discard(pc)
            self._spawn(pc.close())

    async def answer(self, offer: dict[str, Any]) -> dict[str, str]:
        """Answer ``offer``; ``on_transport`` gets the transport once the peer's channel opens.

        Raises:
            ValueError: the offer is not a valid SDP offer.
        """
        if not isinstance(offer, dict) or offer.get("type") != "offer" or not isinstance(offer.get("sdp"), str):
            raise ValueError('expected a JSON object {"type": "offer", "sdp": "..."}')
        pc = new_peer_connection(self.ice_servers)
        self.pending.add(pc)
        reaper = asyncio.get_running_loop().call_later(self.timeout, self._drop, pc)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            async def ready() -> None:
                try:
                    await _wait_open(channel, self.timeout)
                    transport = DataChannelTransport(channel, pc, self.limits)
                except (ConnectionError, TimeoutError, ValueError):
                    self._drop(pc)
                    return
                reaper.cancel()
                self.pending.discard(pc)
                self.on_transport(transport)

            self._spawn(ready())

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            await _set_local(pc, await pc.createAnswer(), self.hosts)
        except BaseException:
            reaper.cancel()
            self.pending.discard(pc)
            await pc.close()
            raise
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def close(self) -> None:
        """Close every pending peer connection and wait for what is being closed."""
        for pc in list(self.pending):
            self._drop(pc)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def datachannel_pair(
    *, limits: TransportLimits | None = None, hosts: Sequence[str] | None = ("127.0.0.1",)
) -> tuple[DataChannelTransport, DataChannelTransport]:
    """Two real aiortc peer connections in this process, joined over loopback ICE.

    Returns (offerer's transport, answerer's transport).
    """
    answered: asyncio.Future[DataChannelTransport] = asyncio.get_running_loop().create_future()
    answerer = Answerer(answered.set_result, hosts=hosts, limits=limits)
    try:
        offerer = await open_datachannel(answerer.answer, hosts=hosts, limits=limits)
        async with asyncio.timeout(20):
            return offerer, await answered
    finally:
        await answerer.close()


def offer_json(body: bytes) -> dict[str, Any]:
    """Parse an HTTP offer body.

    Raises:
        ValueError: with a message for the client.
    """
    try:
        offer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError("the offer is not JSON") from None
    if not isinstance(offer, dict):
        raise ValueError('expected a JSON object {"type": "offer", "sdp": "..."}')
    return offer


async def dial_webrtc(
    url: str, *, ice_servers: Sequence[str] = (), limits: TransportLimits | None = None, timeout: float = 20.0
) -> DataChannelTransport:
    """Dial a hub's ``http://host:port``: POST our offer to ``/offer``, then open the DataChannel.

    Raises:
        ConnectionError: the hub is unreachable or refused the offer.
        TimeoutError: the channel did not open in ``timeout`` seconds.
    """
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or "127.0.0.1"
    offer_url = url.rstrip("/") + "/offer"

    async def post(offer: dict[str, str]) -> dict[str, Any]:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.post(offer_url, json=offer) as response,
            ):
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            raise ConnectionError(f"cannot exchange an offer with {url}: {exc}") from None
        if response.status != 200 or not isinstance(body, dict):
            reason = body.get("error") if isinstance(body, dict) else None
            raise ConnectionError(f"the hub refused the offer ({response.status}): {reason}")
        return body

    async with asyncio.timeout(timeout):
        return await open_datachannel(post, ice_servers=ice_servers, hosts=ice_hosts_for(host), limits=limits)


class WebRtcListener(HttpListener):
    """WebRTC signaling at ``http://host:port/offer``; :attr:`answerer` owns the pending connections."""

    def __init__(self, answerer: Answerer):
        super().__init__("http")
        self.answerer = answerer

        async def offer(request: web.Request) -> web.Response:
            try:
                answer = await answerer.answer(offer_json(await request.read()))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(answer)

        async def cleanup(_app: web.Application) -> None:
            await answerer.close()

        self.app.router.add_post("/offer", offer)
        self.app.on_cleanup.append(cleanup)


async def listen_webrtc(
    host: str,
    port: int,
    on_transport: Callable[[DataChannelTransport], object],
    limits: TransportLimits | None = None,
    *,
    ice_servers: Sequence[str] = (),
    timeout: float = 20.0,
    setup: Callable[[web.Application], object] | None = None,
) -> WebRtcListener:
    """Serve WebRTC signaling at ``http://host:port/offer``; each opened channel goes to ``on_transport``.

    ``setup`` may add routes of its own to the application before it starts (the hub's
    worker page).
    """
    answerer = Answerer(
        on_transport, ice_servers=ice_servers, hosts=ice_hosts_for(host), limits=limits, timeout=timeout
    )
    listener = WebRtcListener(answerer)
    if setup is not None:
        setup(listener.app)
    await listener.start(host, port)
    return listener


async def dial(url: str, options: TransportOptions) -> DataChannelTransport:
    """Dial a hub's ``http://host:port`` over WebRTC (see :func:`dial_webrtc`)."""
    return await dial_webrtc(url, ice_servers=options.ice_servers, limits=options.limits, timeout=options.timeout)


async def listen(
    host: str, port: int, on_transport: Callable[[DataChannelTransport], object], options: TransportOptions
) -> WebRtcListener:
    """Serve WebRTC signaling at ``http://host:port/offer`` (see :func:`listen_webrtc`)."""
    return await listen_webrtc(
        host,
        port,
        on_transport,
        options.limits,
        ice_servers=options.ice_servers,
        timeout=options.timeout,
        setup=options.http_setup,
    )
