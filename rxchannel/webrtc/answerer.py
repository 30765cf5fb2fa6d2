"""The answering side of WebRTC: answers offers, and owns each peer connection until its
channel opens.

An offer has been checked before it gets here (:mod:`.offers`, by the signaling routes);
the answerer caps what answered-but-unopened offers may hold, listens on a remote channel
from the instant the stack hands it over (issue 23: a browser sends SETUP in the packet
that opens the channel), and hands the open transport on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rxchannel.transports import TransportLimits
from rxchannel.transports.addresses import is_loopback

from .channel import DataChannelTransport
from .ice import IceServer, SignalingLimits, TurnRest
from .offerer import NotOpenedError, wait_open
from .offers import OfferRefusedError, check_offer
from .stack import Channel, PeerConnection, choose_stack

__all__ = ["Answerer"]

log = logging.getLogger("rxchannel.signaling")


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
        stack: str | None = None,
    ):
        self.on_transport = on_transport
        self.ice_servers = tuple(s if isinstance(s, IceServer) else IceServer.parse(s) for s in ice_servers)
        #: the WebRTC stack the hub's peer connections run on
        self.stack = choose_stack(stack, hosts)
        if self.stack.name == "native" and hosts is not None and all(is_loopback(h) for h in hosts):
            log.warning(
                "the native WebRTC stack cannot gather on loopback: this hub advertises no candidate, and only "
                "workers that advertise theirs on loopback (aiortc ones) can connect; use --webrtc-stack aiortc "
                "or bind the hub to a real address (--host)"
            )
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
        self.pending: dict[PeerConnection, str] = {}
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

    def _drop(self, pc: PeerConnection) -> None:
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
        pc = self.stack.new_peer_connection(self.hub_ice_servers(time.time()))
        self.pending[pc] = client
        self.created[client] += 1
        self.peak_pending = max(self.peak_pending, len(self.pending))
        reaper = asyncio.get_running_loop().call_later(self.timeout, self._drop, pc)

        def on_datachannel(channel: Channel) -> None:
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
                    await wait_open(channel, pc, timeout=self.timeout)
                    transport.opened()
                    transport.path = await pc.selected_path()
                except (NotOpenedError, ValueError) as exc:
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

        pc.on_channel(on_datachannel)
        try:
            try:
                gathered = await pc.answer(checked.sdp, self.hosts, self.udp_ports)
            except ValueError as exc:
                raise OfferRefusedError(400, f"the offer's SDP is not usable ({exc})") from None
            if "a=candidate:" not in (pc.local_sdp or ""):
                why = "; ".join(gathered.failures) or f"no usable address among {list(self.hosts or [])}"
                raise OfferRefusedError(503, f"the hub could not gather an ICE candidate: {why}")
        except BaseException:
            reaper.cancel()
            self.pending.pop(pc, None)
            await pc.close()
            raise
        return {"sdp": pc.local_sdp or "", "type": "answer"}

    async def close(self) -> None:
        """Close every pending peer connection and wait for what is being closed."""
        for pc in list(self.pending):
            self._drop(pc)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
