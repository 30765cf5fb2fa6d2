"""The answering side of WebRTC: answers offers, and owns each peer connection until its
channel opens.

An offer has been checked before it gets here (:mod:`.offers`, by the signaling routes);
the answerer caps what answered-but-unopened offers may hold, listens on a remote channel
from the instant the stack hands it over (issue 23: a browser sends SETUP in the packet
that opens the channel), and hands the open transport on.

Pending offers are admitted through an :class:`~rxchannel.transports.admission.Admission`:
no peer connection, UDP socket or ICE state exists for an offer until it is admitted
(checked, signed, rate-allowed, within the caps); when the cap is full, the newcomer takes
the place of the oldest pending offer of the address with the most (closed at once, with
its sockets); a pending offer's time to open shrinks as the cap fills (``timeout`` up to
half full, 2 s from 90 %); and one whose offerer is known to be gone (its peer connection
failed, or it left before reading the answer) is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from rxchannel.transports import TransportLimits
from rxchannel.transports.addresses import is_loopback
from rxchannel.transports.admission import SILENT, Admission, ThrottledLog, Ticket

from .channel import DataChannelTransport
from .ice import IceServer, SignalingLimits, TurnRest
from .offerer import NotOpenedError, wait_open
from .offers import OfferRefusedError, check_offer
from .stack import Channel, PeerConnection, choose_stack

__all__ = ["Answerer"]

#: offers answered at once (each answer creates a peer connection, a certificate, sockets:
#: CPU a flood of offers must not take from the rest of the hub)
ANSWERING = 2


class _NewestFirst:
    """At most ``slots`` holders at once; those waiting are let in newest first, and past
    ``max_waiting`` the oldest waiting is refused (a flood's stale offers go first, a
    worker's fresh one is answered at once)."""

    def __init__(self, slots: int, max_waiting: int):
        self.free = slots
        self.max_waiting = max_waiting
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def enter(self) -> None:
        """Raises:
        OfferRefusedError: 503, pushed out of the queue by newer offers."""
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        if len(self.waiting) > self.max_waiting:
            oldest = self.waiting.popleft()
            oldest.set_exception(
                OfferRefusedError(503, "the hub is busy answering offers from many addresses: try again", retry_after=2)
            )
        try:
            await turn
        except asyncio.CancelledError:
            if turn in self.waiting:
                self.waiting.remove(turn)
            elif turn.done() and not turn.cancelled() and turn.exception() is None:
                self.leave()  # let in, but gone: pass the turn on
            raise

    def leave(self) -> None:
        while self.waiting:
            turn = self.waiting.pop()
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1


log = logging.getLogger("rxchannel.signaling")


class Answerer:
    """The answering side: answers offers, and owns every peer connection until its channel opens.

    A peer that posts an offer and never connects does not leave a connection behind: it is
    closed after ``timeout`` seconds (sooner as the pending offers fill up, 2 s from 90 %),
    at once when its peer connection fails or it hung up before reading the answer, and
    :meth:`close` closes every one still pending. At most ``signaling.max_pending`` are
    pending at once (``max_pending_per_address`` per client, past which it gets 429); when
    they are all taken, a new offer takes the place of the oldest of the address with the
    most. Two offers are answered at once, the newest first. The candidates an offer
    names are checked against ``signaling.peers`` first.
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
        #: what admits pending offers (its ``evicted`` counts what floods cost)
        self.admission = Admission(
            "pending WebRTC offers",
            ThrottledLog(log),
            limit=self.signaling.max_pending,
            per_key=self.signaling.max_pending_per_address,
            deadlines={SILENT: (timeout, "did not open its channel")},
            limit_hint=", --max-pending-offers",
            same_key_evicts=False,
        )
        self._tickets: dict[PeerConnection, Ticket] = {}
        self._answering = _NewestFirst(ANSWERING, self.signaling.max_pending)
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def peak_pending(self) -> int:
        """The most peer connections ever pending at once."""
        return self.admission.peak

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

    def _forget(self, pc: PeerConnection) -> bool:
        """No longer pending (its place is free); True if it was."""
        ticket = self._tickets.pop(pc, None)
        if ticket is not None:
            ticket.leave()
        return self.pending.pop(pc, None) is not None

    def _drop(self, pc: PeerConnection) -> None:
        if self._forget(pc):
            self._spawn(pc.close())

    def _admit(self, client: str, holder: list[PeerConnection]) -> Ticket:
        """A place for one more pending offer (evicting the least-proven one when full).

        Raises:
            OfferRefusedError: 429 (this address has its share pending), 503 (none can make room).
        """

        def evict(_reason: str) -> None:
            if holder:
                self._drop(holder[0])

        ticket = self.admission.admit(client, evict)
        if ticket is None:
            if self.admission.last_cap == "key":
                mine = self.admission.by_key[client or "?"]
                raise OfferRefusedError(
                    429,
                    f"{mine} WebRTC offers from {client} are pending, the limit per address is "
                    f"{self.signaling.max_pending_per_address} (raise it with --max-pending-offers)",
                    retry_after=2,
                )
            raise OfferRefusedError(
                503,
                f"{self.admission.total} WebRTC offers are pending, the limit is {self.signaling.max_pending} "
                "(raise it with --max-pending-offers); try again in a few seconds",
                retry_after=2,
            )
        return ticket

    async def answer(
        self, offer: dict[str, Any], client: str = "", *, gone: Callable[[], bool] | None = None
    ) -> dict[str, str]:
        """Answer ``offer``; ``on_transport`` gets the transport once the peer's channel opens.
        ``gone()`` says whether the offerer left before reading the answer (then nothing is kept).

        Raises:
            OfferRefusedError: the offer is refused (its ``status`` and message say why).
            ValueError: the offer is not ``{"type": "offer", "sdp": "..."}``.
        """
        if not isinstance(offer, dict) or offer.get("type") != "offer" or not isinstance(offer.get("sdp"), str):
            raise ValueError('expected a JSON object {"type": "offer", "sdp": "..."}')
        checked = check_offer(offer["sdp"], self.signaling, self.peers)
        holder: list[PeerConnection] = []  # the peer connection, once it exists (an eviction closes it)
        ticket = self._admit(client, holder)
        try:
            await self._answering.enter()
        except BaseException:
            ticket.leave()
            raise
        try:
            return await self._answer(checked.sdp, client, ticket, holder, gone)
        finally:
            self._answering.leave()

    async def _answer(
        self,
        sdp: str,
        client: str,
        ticket: Ticket,
        holder: list[PeerConnection],
        gone: Callable[[], bool] | None,
    ) -> dict[str, str]:
        busy = OfferRefusedError(503, "the hub is busy with offers from many addresses: try again", retry_after=2)
        if ticket.gone:  # evicted while it waited for its turn
            raise busy
        pc = self.stack.new_peer_connection(self.hub_ice_servers(time.time()))
        holder.append(pc)
        self._tickets[pc] = ticket
        self.pending[pc] = client
        self.created[client] += 1

        def state_changed() -> None:  # the offerer is known to be gone: release at once
            if pc.connection_state in ("failed", "closed") and pc in self.pending:
                self.admission.evicted["failed"] += 1
                self._drop(pc)

        pc.on_state(state_changed)

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
                    log.debug("a WebRTC peer from %s did not open its channel: %s", client or "?", exc)
                    self._drop(pc)
                    return
                pc.remove_state_listener(state_changed)
                self._forget(pc)
                try:
                    self.on_transport(transport)
                except Exception as exc:  # a transport nobody runs must not stay open
                    log.warning("closing a WebRTC connection from %s: %s", client or "?", exc)
                    transport.abort()

            self._spawn(ready())

        pc.on_channel(on_datachannel)
        try:
            try:
                gathered = await pc.answer(sdp, self.hosts, self.udp_ports)
            except ValueError as exc:
                if pc not in self.pending:
                    raise busy from None
                raise OfferRefusedError(400, f"the offer's SDP is not usable ({exc})") from None
            except Exception:
                if pc not in self.pending:  # evicted (and closed) while it gathered
                    raise busy from None
                raise
            if "a=candidate:" not in (pc.local_sdp or ""):
                why = "; ".join(gathered.failures) or f"no usable address among {list(self.hosts or [])}"
                raise OfferRefusedError(503, f"the hub could not gather an ICE candidate: {why}")
            if pc not in self.pending:
                raise busy
            if gone is not None and gone():
                self.admission.evicted["offerer gone"] += 1
                raise OfferRefusedError(499, "the offerer left before its answer")
        except BaseException:
            self._forget(pc)
            await pc.close()
            raise
        return {"sdp": pc.local_sdp or "", "type": "answer"}

    async def close(self) -> None:
        """Close every pending peer connection and wait for what is being closed."""
        self.admission.close()
        for pc in list(self.pending):
            self._drop(pc)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
