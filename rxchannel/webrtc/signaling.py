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
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from rxchannel.core import ConnectFailedError
from rxchannel.transports import (
    HostNotFoundError,
    ListenLimits,
    Transport,
    TransportLimits,
    TransportOptions,
    WrongTransportError,
    hub_url,
)
from rxchannel.transports._limits import ThrottledLog
from rxchannel.transports.addresses import hub_hosts
from rxchannel.transports.http import (
    PROCESS_HEADER,
    HttpListener,
    RequestRefusedError,
    client_of,
    refusal,
    signed_path_of,
)
from rxchannel.transports.registry import is_rendezvous_path
from rxchannel.transports.websocket import (
    PATH,
    WebSocketRefusedError,
    add_websocket_route,
    connect_websocket_transport,
)

from .answerer import Answerer
from .channel import DataChannelTransport
from .ice import TurnRest
from .offerer import WebRtcConnectError, dial_webrtc, open_datachannel
from .offers import AddressRateLimiter, OfferRefusedError, RequestAuth, sign_request
from .options import webrtc_options

__all__ = [
    "DirectRefusedError",
    "WebRtcListener",
    "check_turn",
    "datachannel_pair",
    "dial",
    "dial_direct",
    "listen",
    "listen_webrtc",
    "offer_json",
]

log = logging.getLogger("rxchannel.signaling")


async def datachannel_pair(
    *,
    limits: TransportLimits | None = None,
    hosts: Sequence[str] | None = ("127.0.0.1",),
    stack: str | None = None,
    answerer_stack: str | None = None,
) -> tuple[DataChannelTransport, DataChannelTransport]:
    """Two real peer connections in this process, joined over ICE on ``hosts`` (loopback by
    default: aiortc; the native stack needs a real interface's address). ``stack`` is the
    offerer's, ``answerer_stack`` the answerer's (default: the offerer's).

    Returns (offerer's transport, answerer's transport).
    """
    answered: asyncio.Future[DataChannelTransport] = asyncio.get_running_loop().create_future()
    answerer = Answerer(answered.set_result, hosts=hosts, limits=limits, stack=answerer_stack or stack)
    try:
        offerer = await open_datachannel(answerer.answer, hosts=hosts, limits=limits, stack=stack)
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
        self._refusals = ThrottledLog(logging.getLogger("rxchannel.server"))  # beside the refused SETUPs
        body_limit = 2 * signaling.max_offer_bytes + 4096  # JSON escapes each CRLF as four characters

        async def offer(request: web.Request) -> web.Response:
            client = client_of(request)
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
                self.authenticate(request, body)
                connection = request.transport
                answer = await answerer.answer(
                    offer_json(body), client, gone=lambda: connection is None or connection.is_closing()
                )
            except RequestRefusedError as exc:
                self.note_refusal(request, exc)
                return refusal(exc)
            except ValueError as exc:
                self.refused[400] += 1
                return web.json_response({"error": str(exc), "status": 400}, status=400)
            return web.json_response(answer)

        async def ice_servers(request: web.Request) -> web.Response:
            try:
                self.authenticate(request)
            except RequestRefusedError as exc:
                self.note_refusal(request, exc)
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

    def authenticate(self, request: web.Request, body: bytes = b"") -> None:
        """Refuse a request not signed with the hub's secret (when it has one): the signature
        is the ``Authorization`` header, or the ``auth`` query parameter (a browser cannot
        set headers on a WebSocket).

        Raises:
            RequestRefusedError: 401, saying why (missing, wrong, stale or replayed).
        """
        if self.auth is not None:
            header = request.headers.get("Authorization") or request.query.get("auth")
            self.auth.check(header, request.method, signed_path_of(request), body, time.time())

    def check_direct(self, request: web.Request) -> None:
        """The direct path's upgrade: signed like the signaling requests (refusals counted)."""
        try:
            self.authenticate(request)
        except RequestRefusedError as exc:
            self.note_refusal(request, exc)
            raise

    def note_refusal(self, request: web.Request, exc: RequestRefusedError) -> None:
        """Count a refused signaling request; log the ones that refuse a worker its connection
        (401: a missing or wrong secret) as ``connection.refused``, as a refused SETUP is
        logged (throttled: an attacker's thousands of unsigned offers are a few lines)."""
        self.refused[exc.status] += 1
        if exc.status == 401:
            remote = client_of(request)
            self._refusals.warning(
                "refused the connection from %s (webrtc signaling, %s %s): %s",
                remote,
                request.method,
                signed_path_of(request),
                exc.message,
                extra={
                    "event": "connection.refused",
                    "fields": {"remote": remote, "transport": "webrtc", "status": exc.status, "reason": exc.message},
                },
            )


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
    on_transport: Callable[[Transport], object],
    options: TransportOptions | None = None,
) -> WebRtcListener:
    """Serve WebRTC signaling at ``http://host:port``; each opened channel goes to ``on_transport``.

    Unless ``options.webrtc.direct`` is off, the same port also serves RSocket over a
    WebSocket at ``/rsocket`` (the direct path for workers that can reach it; its
    transports go to ``on_transport`` too). With a TURN server (``options.webrtc.turn``),
    it is tried once first: credentials it refuses fail here (a wrong ``--turn-secret`` is
    reported at start, not at the first worker); a server that does not answer is only
    logged. ``options.http_setup`` may add routes of its own to the application before it
    starts (the hub's worker page).

    Raises:
        WebRtcConnectError: the TURN server refused the hub's credentials.
        ValueError: the WebRTC stack asked for is not installed.
        OSError: the address cannot be bound.
    """
    options = options or TransportOptions()
    webrtc = webrtc_options(options.webrtc)
    if webrtc.turn is not None:
        try:
            await check_turn(webrtc.turn)
        except TimeoutError as exc:
            log.warning("%s; workers behind NAT may not connect", exc)
    answerer = Answerer(
        on_transport,
        ice_servers=webrtc.ice_servers,
        turn=webrtc.turn,
        hosts=hub_hosts(host),
        udp_ports=webrtc.udp_ports,
        limits=options.limits,
        timeout=options.timeout,
        signaling=webrtc.signaling,
        stack=webrtc.stack,
    )
    listener = WebRtcListener(answerer, secret=options.secret, limits=options.listen_limits)
    if webrtc.direct:
        add_websocket_route(
            listener,
            on_transport,
            options.limits,
            max_message_size=options.max_message_size,
            check=listener.check_direct,
        )
    if options.http_setup is not None:
        options.http_setup(listener.app)
    await listener.start(host, port, reuse_port=options.reuse_port)
    return listener


class DirectRefusedError(ConnectFailedError):
    """The hub has no direct path for us: it serves WebRTC only (``--no-direct``), or the
    WebSocket did not open in time (a proxy in the way); WebRTC may still work."""


async def dial_direct(url: str, options: TransportOptions, *, timeout: float | None = None) -> Transport:
    """Dial the direct path of the hub at ``http://host:port``: RSocket over its WebSocket
    at ``ws://host:port/rsocket``, signed with ``options.secret`` when there is one.

    Raises:
        DirectRefusedError: the hub has no direct path, or (``timeout`` given) it did not open within it.
        ConnectionRefusedError: nothing listens at the hub's address.
        ConnectionError: the hub refused us (its status and reason; e.g. 401: the secret).
    """
    ws_url = hub_url(url, "ws")
    headers = {}
    if options.secret:
        headers["Authorization"] = sign_request(options.secret, "GET", PATH, b"", time.time())
    affinity = options.affinity
    if affinity is not None and "process" in affinity:
        headers[PROCESS_HEADER] = affinity["process"]
    try:
        transport = await connect_websocket_transport(
            ws_url,
            options.limits,
            max_message_size=options.max_message_size,
            timeout=timeout if timeout is not None else options.timeout,
            headers=headers,
        )
        if affinity is not None and transport.process is not None:
            affinity["process"] = transport.process
        return transport
    except (WrongTransportError, WebSocketRefusedError) as exc:
        if isinstance(exc, WrongTransportError) or exc.status in (404, 405):
            raise DirectRefusedError(
                f"the hub at {url} serves WebRTC only (it runs with --no-direct, or is older): "
                "use --via auto or --via webrtc"
            ) from None
        raise ConnectionError(f"the hub at {url} refused the direct connection ({exc.status}): {exc}") from None
    except (ConnectionRefusedError, HostNotFoundError) as exc:  # WebRTC to the same address cannot do better
        raise type(exc)(str(exc).replace(ws_url, url)) from None  # named by the URL the user gave
    except ConnectionError as exc:
        if timeout is None:
            raise
        raise DirectRefusedError(str(exc)) from None


async def dial(url: str, options: TransportOptions) -> Transport:
    """Dial a hub's ``http://host:port`` the way ``options.webrtc.via`` says.

    ``auto`` (the default) takes the hub's direct WebSocket (``/rsocket`` on the same port)
    when it opens within ``direct_timeout`` seconds, and WebRTC otherwise (a hub serving
    WebRTC only, a proxy in the way); ``direct`` takes only the WebSocket, ``webrtc`` only
    WebRTC. A hub behind a rendezvous (``http://R:P/hubs/NAME``) is reached over WebRTC.

    Raises:
        ConnectionRefusedError: nothing listens at the hub's address.
        WebRtcConnectError / ConnectionError: no path opened; the message says what was tried.
    """
    webrtc = webrtc_options(options.webrtc)
    if is_rendezvous_path(urlsplit(url).path):
        if webrtc.via == "direct":
            raise WrongTransportError(
                f"{url} is a hub behind a rendezvous: signaling is relayed, data goes over WebRTC only "
                "(use --via auto or --via webrtc)"
            )
    elif webrtc.via != "webrtc":
        try:
            return await dial_direct(url, options, timeout=webrtc.direct_timeout if webrtc.via == "auto" else None)
        except DirectRefusedError as exc:
            if webrtc.via == "direct":
                raise WrongTransportError(str(exc)) from None  # the flag is wrong for this hub
            log.debug("no direct path to %s (%s): trying WebRTC", url, exc)
    return await dial_webrtc(
        url, webrtc, secret=options.secret, limits=options.limits, timeout=options.timeout, affinity=options.affinity
    )


async def listen(
    host: str, port: int, on_transport: Callable[[Transport], object], options: TransportOptions
) -> WebRtcListener:
    """Serve a WebRTC hub at ``http://host:port`` (see :func:`listen_webrtc`)."""
    return await listen_webrtc(host, port, on_transport, options)
