"""The dialing side of WebRTC: open a DataChannel to a hub (the offerer), and the HTTP
signaling client that does it at a hub's ``http://host:port``.

The worker gathers on its own interfaces (loopback only when the hub is on loopback),
uses its own ICE servers first and then those the hub hands out (TURN credentials minted
for it), signs its requests when it has the hub's secret, and fails fast: at most
``ice_timeout`` seconds after the answer for a working candidate pair (the error names
the candidates of both sides and what went wrong while gathering).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from rxchannel.core import ConnectFailedError, RxChannelError
from rxchannel.transports import KIND_HEADER, HostNotFoundError, TransportLimits
from rxchannel.transports._base import unreachable
from rxchannel.transports.addresses import is_loopback, worker_hosts
from rxchannel.transports.http import PROCESS_HEADER, REFUSAL_HEADER
from rxchannel.transports.registry import is_rendezvous_path, wrong_transport

from .channel import DataChannelTransport
from .ice import IceServer, PeerAddressPolicy
from .offers import sign_request
from .options import WebRtcOptions
from .stack import Channel, PeerConnection, choose_stack

__all__ = [
    "LABEL",
    "NotOpenedError",
    "WebRtcConnectError",
    "describe_candidates",
    "dial_webrtc",
    "open_datachannel",
    "wait_open",
]

T = TypeVar("T")

#: The DataChannel label rxchannel opens.
LABEL = "rxchannel"
#: What to do when no candidate pair works.
NO_PAIR_HINT = (
    "is UDP blocked between this worker and the hub? Give the hub a TURN server: "
    "rxchannel serve ROOT --turn-url turn:HOST:3478 --turn-secret S"
)


class WebRtcConnectError(ConnectFailedError):
    """A WebRTC connection could not be opened; the message says what was tried and what
    failed (:attr:`status`: the hub's signaling refused us)."""


#: A refusal for being busy (429, 503) is tried again this many times, when it asks for a short wait.
BUSY_RETRIES = 3


async def _patiently(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, tried again after a busy refusal's ``Retry-After`` (at most 5 s, :data:`BUSY_RETRIES` times)."""
    for tries in range(BUSY_RETRIES + 1):
        try:
            return await attempt()
        except WebRtcConnectError as exc:
            wait = exc.retry_after
            if exc.status not in (429, 503) or wait is None or wait > 5 or tries == BUSY_RETRIES:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


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


class NotOpenedError(RxChannelError):
    """Why a channel did not open (internal; turned into a :class:`WebRtcConnectError`)."""

    def __init__(self, reason: str, *, no_pair: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.no_pair = no_pair


async def wait_open(channel: Channel, pc: PeerConnection, *, timeout: float, ice_timeout: float | None = None) -> None:
    """Wait until ``channel`` opens.

    Raises:
        NotOpenedError: the channel closed, the peer connection failed, ICE found no working
            pair within ``ice_timeout``, or nothing opened within ``timeout``.
    """
    if channel.readyState == "open":
        return
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[None] = loop.create_future()

    def settle(error: NotOpenedError | None = None) -> None:
        if outcome.done():
            return
        if error is None:
            outcome.set_result(None)
        else:
            outcome.set_exception(error)

    def on_open() -> None:
        settle()

    def on_close() -> None:
        settle(NotOpenedError("the DataChannel closed before it opened"))

    def on_state() -> None:
        if pc.connection_state == "failed":
            ice = pc.ice_state
            if ice == "failed":
                settle(NotOpenedError("ICE found no working candidate pair", no_pair=True))
            else:
                settle(NotOpenedError(f"the peer connection failed (ICE {ice}; DTLS handshake failed?)"))

    def ice_deadline() -> None:
        if pc.ice_state not in ("connected", "completed"):
            settle(NotOpenedError(f"ICE found no working candidate pair within {ice_timeout:g} s", no_pair=True))

    channel.once("open", on_open)
    channel.once("close", on_close)
    pc.on_state(on_state)
    timer = loop.call_later(ice_timeout, ice_deadline) if ice_timeout is not None else None
    try:
        async with asyncio.timeout(timeout):
            await outcome
    except TimeoutError:
        raise NotOpenedError(f"the DataChannel did not open within {timeout:g} s (ICE {pc.ice_state})") from None
    finally:
        if timer is not None:
            timer.cancel()
        pc.remove_state_listener(on_state)
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
    stack: str | None = None,
) -> DataChannelTransport:
    """The offering side: create a channel, send the offer via ``send_offer`` (which returns
    the answer as ``{"sdp", "type"}``), and return the open transport.

    The answer's candidates that ``peers`` refuses are dropped before any check is sent.
    ``stack`` names the WebRTC stack (None: :func:`~.stack.default_stack`).

    Raises:
        WebRtcConnectError: the channel did not open; the message lists both sides'
            candidates and what failed while gathering.
        ConnectionError: ``send_offer`` failed.
    """
    servers = [s if isinstance(s, IceServer) else IceServer.parse(s) for s in ice_servers]
    pc = choose_stack(stack, hosts).new_peer_connection(servers)
    answer_sdp: str | None = None
    failures: list[str] = []
    try:
        channel = pc.create_channel(LABEL)
        transport = DataChannelTransport(channel, pc, limits)  # listening before the channel can open
        failures = (await pc.offer(hosts, udp_ports)).failures
        answer = await send_offer({"sdp": pc.local_sdp or "", "type": "offer"})
        answer_sdp = str(answer.get("sdp", ""))
        if peers is not None:
            answer_sdp = _filter_remote(answer_sdp, peers)
        try:
            await pc.accept(answer_sdp)
        except ValueError as exc:
            raise WebRtcConnectError(f"the hub's answer is not usable SDP ({exc})") from None
        await wait_open(channel, pc, timeout=timeout, ice_timeout=ice_timeout)
        transport.opened()
        transport.path = await pc.selected_path()
        return transport
    except NotOpenedError as exc:
        await pc.close()
        local = describe_candidates(pc.local_sdp)
        detail = f"{exc.reason} (our candidates: {local}; the peer's: {describe_candidates(answer_sdp)}"
        detail += "".join(f"; {failure}" for failure in failures) + ")"
        raise WebRtcConnectError(detail + (f"; {NO_PAIR_HINT}" if exc.no_pair else "")) from None
    except BaseException:
        await pc.close()
        raise


def _check_kind(url: str, response: aiohttp.ClientResponse) -> None:
    """Raise :class:`WrongTransportError` when what answered is not a WebRTC hub, and
    :class:`WebRtcConnectError` when a rendezvous answered for the hub (it is not there)."""
    kind = response.headers.get(KIND_HEADER)
    if kind == "rendezvous":
        reason = response.headers.get(REFUSAL_HEADER) or response.reason or ""
        raise WebRtcConnectError(
            f"the rendezvous refused ({response.status}): {reason}", response.status, _retry_after(response)
        )
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


async def _refusal(response: aiohttp.ClientResponse, refused: str) -> WebRtcConnectError:
    """The error for a hub's refusal: ``refused`` says what was refused; the status and the
    hub's reason follow, and the error carries its status and Retry-After."""
    reason = await _error_reason(response)
    return WebRtcConnectError(f"{refused} ({response.status}): {reason}", response.status, _retry_after(response))


async def dial_webrtc(
    url: str,
    options: WebRtcOptions | None = None,
    *,
    secret: str | None = None,
    limits: TransportLimits | None = None,
    timeout: float = 20.0,
    affinity: dict[str, str] | None = None,
) -> DataChannelTransport:
    """Dial a hub's ``http://host:port``: fetch its ICE servers, POST our offer to ``/offer``,
    then open the DataChannel on ``options.stack``. ``affinity``: see
    :attr:`~rxchannel.transports.TransportOptions.affinity`.

    The worker gathers on its own interfaces (loopback only when the hub is on loopback),
    uses ``options.ice_servers`` first and then those the hub hands out (TURN credentials
    minted for it), and signs its requests when ``secret`` is given.

    Raises:
        WebRtcConnectError: the hub is unreachable, refused us, or no connection opened
            (the message says which, and what to do).
    """
    options = options or WebRtcOptions()
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
        if affinity is not None and "process" in affinity:
            headers[PROCESS_HEADER] = affinity["process"]
        return headers

    heard: list[int] = []  # the statuses the hub answered with: none means it never answered

    def landed(response: aiohttp.ClientResponse) -> None:
        heard.append(response.status)
        if affinity is not None and PROCESS_HEADER in response.headers:
            affinity["process"] = response.headers[PROCESS_HEADER]

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def ice_servers_once() -> list[IceServer]:
            path = urlsplit(base + "/ice-servers").path
            try:
                async with session.get(base + "/ice-servers", headers=signed("GET", path, b"")) as response:
                    heard.append(response.status)
                    _check_kind(url, response)
                    if response.status == 404:
                        return []  # a hub that hands out no ICE servers
                    if response.status != 200:
                        raise await _refusal(response, f"the hub at {url} refused us")
                    body = await response.json(content_type=None)
            except aiohttp.ClientConnectorError as exc:
                error = unreachable(url, exc, "the rendezvous" if is_rendezvous_path(parts.path) else "the hub")
                if isinstance(error, (ConnectionRefusedError, HostNotFoundError)):
                    raise error from None  # nothing listens there, or no such host: callers may give up at once
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

        async def post_once(offer: dict[str, str]) -> dict[str, Any]:
            body = json.dumps(offer).encode()
            path = urlsplit(base + "/offer").path
            try:
                async with session.post(base + "/offer", data=body, headers=signed("POST", path, body)) as response:
                    _check_kind(url, response)
                    landed(response)
                    if response.status != 200:
                        raise await _refusal(response, "the hub refused the offer")
                    answer = await response.json(content_type=None)
            except TimeoutError:
                raise WebRtcConnectError(f"the hub at {url} did not answer the offer within {timeout:g} s") from None
            except (aiohttp.ClientError, ValueError) as exc:
                raise WebRtcConnectError(f"cannot exchange an offer with {url}: {exc or type(exc).__name__}") from None
            if not isinstance(answer, dict) or not isinstance(answer.get("sdp"), str):
                raise WebRtcConnectError(f"the hub at {url} sent no usable answer")
            return answer

        async def post(offer: dict[str, str]) -> dict[str, Any]:
            return await _patiently(lambda: post_once(offer))

        try:
            async with asyncio.timeout(timeout):
                servers = [*options.servers(), *(await _patiently(ice_servers_once))]
                return await open_datachannel(
                    post,
                    ice_servers=servers,
                    hosts=hosts,
                    udp_ports=options.udp_ports,
                    peers=peers,
                    limits=limits,
                    timeout=timeout,
                    ice_timeout=options.ice_timeout,
                    stack=options.stack,
                )
        except WebRtcConnectError as exc:
            raise WebRtcConnectError(f"WebRTC to {url} failed: {exc}", exc.status, exc.retry_after) from None
        except TimeoutError:
            if not heard:  # the session's own deadline and this one race: say what happened either way
                raise WebRtcConnectError(
                    f"WebRTC to {url} failed: the hub did not answer within {timeout:g} s"
                ) from None
            raise WebRtcConnectError(f"WebRTC to {url} did not open within {timeout:g} s") from None
