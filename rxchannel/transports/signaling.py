"""WebRTC signaling: offer/answer over HTTP (aiohttp), ICE servers for workers, an in-process pairing.

**Routes of a WebRTC hub** (``http://host:port``):

* ``GET /ice-servers`` → ``{"iceServers": [RTCIceServer...], "ttl": seconds | null}``: the
  ICE servers a worker (or the worker page) should use with this hub: its STUN servers,
  and, when the hub has ``--turn-url``/``--turn-secret``, its TURN server with freshly
  minted credentials valid for ``ttl`` seconds (:class:`~.ice.TurnRest`). Signed like an
  offer when the hub has a secret.
* ``POST /offer`` with ``{"type": "offer", "sdp": "..."}`` → ``{"type": "answer", "sdp": "..."}``.
  Checked before any peer connection exists (:mod:`.offers`): rate per address (429),
  size (413), signature when the hub has a secret (401), the SDP (400), pending
  connections (503). Errors are ``{"error": "...", "status": N}`` and name the limit hit.

**No STUN by default.** aiortc contacts a public STUN server unless it is given
``iceServers=[]``; every peer connection made here gets exactly the ICE servers passed in.

**Addresses.** The hub's host candidates are the addresses it was bound to, the worker's
its own interfaces, loopback only when the hub is on loopback
(:mod:`.addresses`); gathering runs inside :func:`.gathering.gathering`, which also
applies ``--udp-ports`` and records why a TURN relay was refused.

**Failing fast.** A dial waits at most ``ice_timeout`` seconds after the answer for ICE to
find a working candidate pair (aioice itself would retry each check for ~30 s), and fails
at once when the peer connection fails; the error names the candidates of both sides and
what went wrong while gathering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ._base import KIND_HEADER, TransportLimits, TransportOptions, unreachable
from ._limits import ListenLimits
from .addresses import hub_hosts, is_loopback, worker_hosts
from .datachannel import DataChannelTransport
from .gathering import Gathering, gathering, ice_host_addresses
from .http import REFUSAL_HEADER, HttpListener, RequestRefusedError, refusal
from .ice import IceServer, PeerAddressPolicy, SignalingLimits, TurnRest
from .offers import AddressRateLimiter, OfferRefusedError, RequestAuth, check_offer, sign_request
from .registry import wrong_transport

__all__ = [
    "LABEL",
    "Answerer",
    "WebRtcConnectError",
    "WebRtcListener",
    "check_turn",
    "datachannel_pair",
    "dial",
    "dial_webrtc",
    "ice_host_addresses",
    "listen",
    "listen_webrtc",
    "new_peer_connection",
    "open_datachannel",
]

log = logging.getLogger("rxchannel.signaling")

#: The DataChannel label rxchannel opens.
LABEL = "rxchannel"
#: What to do when no candidate pair works.
NO_PAIR_HINT = (
    "is UDP blocked between this worker and the hub? Give the hub a TURN server: "
    "rxchannel serve ROOT --turn-url turn:HOST:3478 --turn-secret S"
)


class WebRtcConnectError(ConnectionError):
    """A WebRTC connection could not be opened; the message says what was tried and what failed.

    Attributes:
        status: the HTTP status when the hub's signaling refused us (401: the shared secret,
            429: too many offers...), else ``None``.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _as_ice_server(server: IceServer | str) -> IceServer:
    return server if isinstance(server, IceServer) else IceServer.parse(server)


def new_peer_connection(ice_servers: Sequence[IceServer | str] = ()) -> RTCPeerConnection:
    """An aiortc peer connection with exactly these ICE servers (none by default: no STUN).

    aiortc uses the first STUN and the first TURN server only.
    """
    servers = [_as_ice_server(s) for s in ice_servers]
    config = [RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential) for s in servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=config))


_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\w+)", re.MULTILINE)


def describe_candidates(sdp: str | None) -> str:
    """The candidates of an SDP by type, e.g. ``host 10.0.0.2, relay 203.0.113.9`` (or ``none``)."""
    found = _CANDIDATE.findall(sdp or "")
    return ", ".join(f"{kind} {address}" for address, kind in found) or "none"


def _filter_remote(sdp: str, peers: PeerAddressPolicy) -> str:
    """``sdp`` without the candidates ``peers`` refuses (no check is ever sent there)."""
    lines = sdp.splitlines()
    kept = [ln for ln in lines if not (ln.startswith("a=candidate:") and not _permitted(ln, peers))]
    return "\r\n".join(kept) + "\r\n"


def _permitted(line: str, peers: PeerAddressPolicy) -> bool:
    fields = line.split()
    return len(fields) < 5 or peers.permits(fields[4])


async def _set_local(
    pc: RTCPeerConnection,
    description: RTCSessionDescription,
    hosts: Sequence[str] | None,
    udp_ports: tuple[int, int] | None = None,
) -> Gathering:
    with gathering(hosts, udp_ports) as gathered:
        await pc.setLocalDescription(description)  # gathers candidates (aiortc waits for completion)
    return gathered


class _NotOpenedError(Exception):
    """Why a channel did not open (internal; turned into a :class:`WebRtcConnectError`)."""

    def __init__(self, reason: str, *, no_pair: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.no_pair = no_pair


async def _wait_open(
    channel: RTCDataChannel, pc: RTCPeerConnection, *, timeout: float, ice_timeout: float | None = None
) -> None:
    """Wait until ``channel`` opens.

    Raises:
        _NotOpenedError: the channel closed, the peer connection failed, ICE found no working
            pair within ``ice_timeout``, or nothing opened within ``timeout``.
    """
    if channel.readyState == "open":
        return
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[None] = loop.create_future()

    def settle(error: _NotOpenedError | None = None) -> None:
        if outcome.done():
            return
        if error is None:
            outcome.set_result(None)
        else:
            outcome.set_exception(error)

    def on_open() -> None:
        settle()

    def on_close() -> None:
        settle(_NotOpenedError("the DataChannel closed before it opened"))

    def on_state() -> None:
        if pc.connectionState == "failed":
            ice = pc.iceConnectionState
            if ice == "failed":
                settle(_NotOpenedError("ICE found no working candidate pair", no_pair=True))
            else:
                settle(_NotOpenedError(f"the peer connection failed (ICE {ice}; DTLS handshake failed?)"))

    def ice_deadline() -> None:
        if pc.iceConnectionState not in ("connected", "completed"):
            settle(_NotOpenedError(f"ICE found no working candidate pair within {ice_timeout:g} s", no_pair=True))

    channel.once("open", on_open)
    channel.once("close", on_close)
    pc.on("connectionstatechange", on_state)
    timer = loop.call_later(ice_timeout, ice_deadline) if ice_timeout is not None else None
    try:
        async with asyncio.timeout(timeout):
            await outcome
    except TimeoutError:
        raise _NotOpenedError(
            f"the DataChannel did not open within {timeout:g} s (ICE {pc.iceConnectionState})"
        ) from None
    finally:
        if timer is not None:
            timer.cancel()
        pc.remove_listener("connectionstatechange", on_state)
        with contextlib.suppress(Exception):
            channel.remove_listener("open", on_open)
            channel.remove_listener("close", on_close)


async def open_datachannel(
    send_offer: Callable[[dict[str, str]], Awaitable[dict[str, Any]]],
    *,
    ice_servers: Sequence[IceServer | str] = (),
    hosts: Sequence[str] | None = ("127.0.0.1",),
    udp_ports: tuple[int, int] | None = None,
    peers: PeerAddressPolicy | None = None,
    limits: TransportLimits | None = None,
    timeout: float = 20.0,
    ice_timeout: float | None = None,
) -> DataChannelTransport:
    """The offering side: create a channel, send the offer via ``send_offer`` (which returns
    the answer as ``{"sdp", "type"}``), and return the open transport.

    The answer's candidates that ``peers`` refuses are dropped before any check is sent.

    Raises:
        WebRtcConnectError: the channel did not open; the message lists both sides'
            candidates and what failed while gathering.
        ConnectionError: ``send_offer`` failed.
    """
    pc = new_peer_connection(ice_servers)
    answer_sdp: str | None = None
    gathered = Gathering()
    try:
        channel = pc.createDataChannel(LABEL, ordered=True)
        transport = DataChannelTransport(channel, pc, limits)  # listening before the channel can open
        gathered = await _set_local(pc, await pc.createOffer(), hosts, udp_ports)
        answer = await send_offer({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
        answer_sdp = str(answer.get("sdp", ""))
        if peers is not None:
            answer_sdp = _filter_remote(answer_sdp, peers)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except Exception as exc:  # aiortc's parser raises many kinds on a bad answer
            raise WebRtcConnectError(f"the hub's answer is not usable SDP ({type(exc).__name__}: {exc})") from None
        await _wait_open(channel, pc, timeout=timeout, ice_timeout=ice_timeout)
        transport.opened()
        return transport
    except _NotOpenedError as exc:
        await pc.close()
        local = describe_candidates(pc.localDescription.sdp if pc.localDescription else None)
        detail = f"{exc.reason} (our candidates: {local}; the peer's: {describe_candidates(answer_sdp)}"
        detail += "".join(f"; {failure}" for failure in gathered.failures) + ")"
        raise WebRtcConnectError(detail + (f"; {NO_PAIR_HINT}" if exc.no_pair else "")) from None
    except BaseException:
        await pc.close()
        raise


class Answerer:
    """The answering side: answers offers, and owns every peer connection until its channel opens.

    A peer that posts an offer and never connects does not leave a connection behind: it is
    closed after ``timeout`` seconds, and :meth:`close` closes every one still pending. At
    most ``signaling.max_pending`` are pending at once (``max_pending_per_address`` per
    client); the candidates an offer names are checked against ``signaling.peers`` first.
    """

    def __init__(
        self,
        on_transport: Callable[[DataChannelTransport], object],
        *,
        ice_servers: Sequence[IceServer | str] = (),
        turn: TurnRest | None = None,
        hosts: Sequence[str] | None = ("127.0.0.1",),
        udp_ports: tuple[int, int] | None = None,
        limits: TransportLimits | None = None,
        timeout: float = 20.0,
        signaling: SignalingLimits | None = None,
    ):
        self.on_transport = on_transport
        self.ice_servers = tuple(_as_ice_server(s) for s in ice_servers)
        self.turn = turn
        self.hosts = hosts
        self.udp_ports = udp_ports
        self.limits = limits
        self.timeout = timeout
        self.signaling = signaling or SignalingLimits()
        loopback = [h for h in hosts or () if is_loopback(h)]
        #: the remote addresses this hub may check: the operator's policy, plus loopback if it serves there
        self.peers = self.signaling.peers.with_allowed(*loopback) if loopback else self.signaling.peers
        #: peer connections answered whose channel has not opened yet, with the client's address
        self.pending: dict[RTCPeerConnection, str] = {}
        #: peer connections created, by client address (what offers have cost, for operators and tests)
        self.created: Counter[str] = Counter()
        #: the most peer connections ever pending at once
        self.peak_pending = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def hub_ice_servers(self, now: float) -> list[IceServer]:
        """The ICE servers the hub's own peer connections use: its TURN server first (aiortc uses one)."""
        return ([self.turn.mint(now, "hub")] if self.turn else []) + list(self.ice_servers)

    def worker_ice_servers(self, now: float) -> list[IceServer]:
        """The ICE servers handed to workers: the hub's STUN servers and freshly minted TURN credentials.

        Static TURN credentials given to the hub (``--ice-credential``) are its own and never handed out.
        """
        minted = [self.turn.mint(now)] if self.turn else []
        return minted + [s for s in self.ice_servers if not s.is_turn]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop(self, pc: RTCPeerConnection) -> None:
        if pc in self.pending:
            del self.pending[pc]
            self._spawn(pc.close())

    def _admit(self, client: str) -> None:
        if len(self.pending) >= self.signaling.max_pending:
            raise OfferRefusedError(
                503,
                f"{len(self.pending)} WebRTC offers are pending, the limit is {self.signaling.max_pending} "
                "(raise it with --max-pending-offers); try again in a few seconds",
                retry_after=2,
            )
        mine = Counter(self.pending.values())[client]
        if mine >= self.signaling.max_pending_per_address:
            raise OfferRefusedError(
                429,
                f"{mine} WebRTC offers from {client} are pending, the limit per address is "
                f"{self.signaling.max_pending_per_address} (raise it with --max-pending-offers)",
                retry_after=2,
            )

    async def answer(self, offer: dict[str, Any], client: str = "") -> dict[str, str]:
        """Answer ``offer``; ``on_transport`` gets the transport once the peer's channel opens.

        Raises:
            OfferRefusedError: the offer is refused (its ``status`` and message say why).
            ValueError: the offer is not ``{"type": "offer", "sdp": "..."}``.
        """
        if not isinstance(offer, dict) or offer.get("type") != "offer" or not isinstance(offer.get("sdp"), str):
            raise ValueError('expected a JSON object {"type": "offer", "sdp": "..."}')
        checked = check_offer(offer["sdp"], self.signaling, self.peers)
        self._admit(client)
        pc = new_peer_connection(self.hub_ice_servers(time.time()))
        self.pending[pc] = client
        self.created[client] += 1
        self.peak_pending = max(self.peak_pending, len(self.pending))
        reaper = asyncio.get_running_loop().call_later(self.timeout, self._drop, pc)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            # listen now, in the callback that hands over the channel: what the peer sent
            # right behind the channel's OPEN is delivered in the same breath (issue 23)
            try:
                transport = DataChannelTransport(channel, pc, self.limits)
            except ValueError as exc:
                log.info("a WebRTC peer from %s opened an unusable channel: %s", client or "?", exc)
                self._drop(pc)
                return
            transport.remote = client or "?"

            async def ready() -> None:
                try:
                    await _wait_open(channel, pc, timeout=self.timeout)
                    transport.opened()
                except (_NotOpenedError, ValueError) as exc:
                    log.info("a WebRTC peer from %s did not open its channel: %s", client or "?", exc)
                    self._drop(pc)
                    return
                reaper.cancel()
                self.pending.pop(pc, None)
                try:
                    self.on_transport(transport)
                except Exception as exc:  # a transport nobody runs must not stay open
                    log.warning("closing a WebRTC connection from %s: %s", client or "?", exc)
                    transport.abort()

            self._spawn(ready())

        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=checked.sdp, type="offer"))
            except Exception as exc:  # aiortc's SDP parser raises many kinds on hostile input
                raise OfferRefusedError(400, f"the offer's SDP is not usable ({type(exc).__name__}: {exc})") from None
            gathered = await _set_local(pc, await pc.createAnswer(), self.hosts, self.udp_ports)
            if "a=candidate:" not in pc.localDescription.sdp:
                why = "; ".join(gathered.failures) or f"no usable address among {list(self.hosts or [])}"
                raise OfferRefusedError(503, f"the hub could not gather an ICE candidate: {why}")
        except BaseException:
            reaper.cancel()
            self.pending.pop(pc, None)
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


def _check_kind(url: str, response: aiohttp.ClientResponse) -> None:
    """Raise :class:`WrongTransportError` when what answered is not a WebRTC hub."""
    kind = response.headers.get(KIND_HEADER)
    if kind != "webrtc" and (kind is not None or response.status != 200):
        raise wrong_transport(url, kind)


async def _error_reason(response: aiohttp.ClientResponse) -> str:
    if REFUSAL_HEADER in response.headers:
        return response.headers[REFUSAL_HEADER]
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return response.reason or ""
    return str(body.get("error")) if isinstance(body, dict) else ""


async def dial_webrtc(
    url: str,
    *,
    ice_servers: Sequence[IceServer | str] = (),
    secret: str | None = None,
    udp_ports: tuple[int, int] | None = None,
    limits: TransportLimits | None = None,
    timeout: float = 20.0,
    ice_timeout: float | None = 4.0,
) -> DataChannelTransport:
    """Dial a hub's ``http://host:port``: fetch its ICE servers, POST our offer to ``/offer``,
    then open the DataChannel.

    The worker gathers on its own interfaces (loopback only when the hub is on loopback),
    uses ``ice_servers`` first and then those the hub hands out (TURN credentials minted
    for it), and signs its requests when ``secret`` is given.

    Raises:
        WebRtcConnectError: the hub is unreachable, refused us, or no connection opened
            (the message says which, and what to do).
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    base = url.rstrip("/")
    hosts = await asyncio.to_thread(worker_hosts, host)
    loopback_hub = hosts is not None and all(is_loopback(h) for h in hosts)
    peers = PeerAddressPolicy().with_allowed("127.0.0.0/8", "::1") if loopback_hub else PeerAddressPolicy()

    def signed(method: str, path: str, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"} if body else {}
        if secret:
            headers["Authorization"] = sign_request(secret, method, path, body, time.time())
        return headers

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def hub_ice_servers() -> list[IceServer]:
            path = urlsplit(base + "/ice-servers").path
            try:
                async with session.get(base + "/ice-servers", headers=signed("GET", path, b"")) as response:
                    _check_kind(url, response)
                    if response.status == 404:
                        return []  # a hub that hands out no ICE servers
                    if response.status != 200:
                        reason = await _error_reason(response)
                        raise WebRtcConnectError(
                            f"the hub at {url} refused us ({response.status}): {reason}", response.status
                        )
                    body = await response.json(content_type=None)
            except aiohttp.ClientConnectorError as exc:
                error = unreachable(url, exc)
                if isinstance(error, ConnectionRefusedError):
                    raise error from None  # nothing listens there: callers may give up at once
                raise WebRtcConnectError(str(error)) from None
            except TimeoutError:
                raise WebRtcConnectError(f"the hub at {url} did not answer within {timeout:g} s") from None
            except (aiohttp.ClientError, ValueError) as exc:
                raise WebRtcConnectError(f"cannot reach the hub at {url}: {exc or type(exc).__name__}") from None
            entries = body.get("iceServers", []) if isinstance(body, dict) else []
            try:
                return [IceServer.from_w3c(entry) for entry in entries]
            except ValueError as exc:
                raise WebRtcConnectError(f"the hub at {url} handed out an unusable ICE server: {exc}") from None

        async def post(offer: dict[str, str]) -> dict[str, Any]:
            body = json.dumps(offer).encode()
            path = urlsplit(base + "/offer").path
            try:
                async with session.post(base + "/offer", data=body, headers=signed("POST", path, body)) as response:
                    _check_kind(url, response)
                    if response.status != 200:
                        reason = await _error_reason(response)
                        raise WebRtcConnectError(
                            f"the hub refused the offer ({response.status}): {reason}", response.status
                        )
                    answer = await response.json(content_type=None)
            except TimeoutError:
                raise WebRtcConnectError(f"the hub at {url} did not answer the offer within {timeout:g} s") from None
            except (aiohttp.ClientError, ValueError) as exc:
                raise WebRtcConnectError(f"cannot exchange an offer with {url}: {exc or type(exc).__name__}") from None
            if not isinstance(answer, dict) or not isinstance(answer.get("sdp"), str):
                raise WebRtcConnectError(f"the hub at {url} sent no usable answer")
            return answer

        try:
            async with asyncio.timeout(timeout):
                servers = [*ice_servers, *(await hub_ice_servers())]
                return await open_datachannel(
                    post,
                    ice_servers=servers,
                    hosts=hosts,
                    udp_ports=udp_ports,
                    peers=peers,
                    limits=limits,
                    timeout=timeout,
                    ice_timeout=ice_timeout,
                )
        except WebRtcConnectError as exc:
            raise WebRtcConnectError(f"WebRTC to {url} failed: {exc}", exc.status) from None
        except TimeoutError:
            raise WebRtcConnectError(f"WebRTC to {url} did not open within {timeout:g} s") from None


class WebRtcListener(HttpListener):
    """WebRTC signaling at ``http://host:port/offer`` and ``/ice-servers`` (see the module docstring).

    :attr:`answerer` owns the pending connections; :attr:`refused` counts refusals by status.
    """

    def __init__(self, answerer: Answerer, *, secret: str | None = None, limits: ListenLimits | None = None):
        super().__init__("http", kind="webrtc", limits=limits)
        self.answerer = answerer
        signaling = answerer.signaling
        self.auth = RequestAuth(secret) if secret else None
        self.rate = AddressRateLimiter(signaling.offer_rate, signaling.offer_burst)
        self.refused: Counter[int] = Counter()
        body_limit = 2 * signaling.max_offer_bytes + 4096  # JSON escapes each CRLF as four characters

        def authenticate(request: web.Request, body: bytes) -> None:
            if self.auth is not None:
                header = request.headers.get("Authorization")
                self.auth.check(header, request.method, request.path, body, time.time())

        async def offer(request: web.Request) -> web.Response:
            client = request.remote or ""
            try:
                wait = self.rate.take(client, asyncio.get_running_loop().time())
                if wait is not None:
                    raise OfferRefusedError(
                        429,
                        f"too many offers from {client}: the limit is {signaling.offer_rate:g}/s per address, "
                        f"{signaling.offer_burst} at once (raise it with --offer-rate)",
                        retry_after=wait,
                    )
                body = await self.read_body(request, body_limit, hint=" (raise it with --max-offer-bytes)")
                authenticate(request, body)
                answer = await answerer.answer(offer_json(body), client)
            except RequestRefusedError as exc:
                self.refused[exc.status] += 1
                return refusal(exc)
            except ValueError as exc:
                self.refused[400] += 1
                return web.json_response({"error": str(exc), "status": 400}, status=400)
            return web.json_response(answer)

        async def ice_servers(request: web.Request) -> web.Response:
            try:
                authenticate(request, b"")
            except RequestRefusedError as exc:
                self.refused[exc.status] += 1
                return refusal(exc)
            servers = answerer.worker_ice_servers(time.time())
            ttl = answerer.turn.ttl if answerer.turn else None
            return web.json_response(
                {"iceServers": [s.to_w3c() for s in servers], "ttl": ttl}, headers={"Cache-Control": "no-store"}
            )

        async def cleanup(_app: web.Application) -> None:
            await answerer.close()

        self.app.router.add_post("/offer", offer)
        self.app.router.add_get("/ice-servers", ice_servers)
        self.app.on_cleanup.append(cleanup)


async def check_turn(turn: TurnRest, *, timeout: float = 5.0) -> None:
    """Allocate once on ``turn``'s first UDP/TCP URL with minted credentials, and release it.

    Raises:
        WebRtcConnectError: the TURN server refused the credentials (a ``--turn-secret``
            that is not coturn's ``static-auth-secret``) or refused the allocation.
        TimeoutError: no answer within ``timeout`` (the server may be down or filtered).
    """
    import aioice.stun
    import aioice.turn

    url = turn.urls[0]
    match = re.match(r"^(turns?):(\[[^\]]+\]|[^:?]+)(?::(\d+))?(?:\?transport=(\w+))?$", url)
    if match is None:  # pragma: no cover - TurnRest validated the URL
        raise WebRtcConnectError(f"{url!r} is not a TURN URL")
    scheme, host, port = match[1], match[2].strip("[]"), int(match[3] or (5349 if match[1] == "turns" else 3478))
    transport = match[4] or ("tcp" if scheme == "turns" else "udp")
    username, credential = turn.credentials(time.time(), "hub-check")
    try:
        async with asyncio.timeout(timeout):
            endpoint, _ = await aioice.turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                server_addr=(host, port),
                username=username,
                password=credential,
                ssl=scheme == "turns",
                transport=transport,
            )
    except aioice.stun.TransactionFailed as exc:
        raise WebRtcConnectError(
            f"the TURN server {url} refused the hub's credentials ({exc}): --turn-secret must equal coturn's "
            "static-auth-secret, and coturn must run with use-auth-secret"
        ) from None
    except aioice.stun.TransactionTimeout:
        raise TimeoutError(f"the TURN server {url} did not answer") from None
    endpoint.close()


async def listen_webrtc(
    host: str,
    port: int,
    on_transport: Callable[[DataChannelTransport], object],
    limits: TransportLimits | None = None,
    *,
    ice_servers: Sequence[IceServer | str] = (),
    turn: TurnRest | None = None,
    secret: str | None = None,
    udp_ports: tuple[int, int] | None = None,
    signaling: SignalingLimits | None = None,
    timeout: float = 20.0,
    setup: Callable[[web.Application], object] | None = None,
    listen_limits: ListenLimits | None = None,
) -> WebRtcListener:
    """Serve WebRTC signaling at ``http://host:port``; each opened channel goes to ``on_transport``.

    With ``turn``, the TURN server is tried once first: credentials it refuses fail here
    (a wrong ``--turn-secret`` is reported at start, not at the first worker); a server
    that does not answer is only logged. ``setup`` may add routes of its own to the
    application before it starts (the hub's worker page).

    Raises:
        WebRtcConnectError: the TURN server refused the hub's credentials.
        OSError: the address cannot be bound.
    """
    if turn is not None:
        try:
            await check_turn(turn)
        except TimeoutError as exc:
            log.warning("%s; workers behind NAT may not connect", exc)
    answerer = Answerer(
        on_transport,
        ice_servers=ice_servers,
        turn=turn,
        hosts=hub_hosts(host),
        udp_ports=udp_ports,
        limits=limits,
        timeout=timeout,
        signaling=signaling,
    )
    listener = WebRtcListener(answerer, secret=secret, limits=listen_limits)
    if setup is not None:
        setup(listener.app)
    await listener.start(host, port)
    return listener


async def dial(url: str, options: TransportOptions) -> DataChannelTransport:
    """Dial a hub's ``http://host:port`` over WebRTC (see :func:`dial_webrtc`)."""
    return await dial_webrtc(
        url,
        ice_servers=options.ice_servers,
        secret=options.secret,
        udp_ports=options.udp_ports,
        limits=options.limits,
        timeout=options.timeout,
        ice_timeout=options.ice_timeout,
    )


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
        turn=options.turn,
        secret=options.secret,
        udp_ports=options.udp_ports,
        signaling=options.signaling,
        timeout=options.timeout,
        setup=options.http_setup,
        listen_limits=options.listen_limits,
    )
