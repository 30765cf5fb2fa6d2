"""The native stack: libwebrtc compiled (the ``reactor-webrtc`` package, extra ``[native]``).

libwebrtc's DataChannels move several times what aiortc's pure-Python SCTP does, for a
seventh of the CPU (``benchmarks/paths.py``, ``benchmarks/datachannel.py``). Two layers:

* :class:`NativeDataChannel` / :class:`NativePeerConnection`: aiortc-shaped objects
  (``readyState``, ``bufferedAmount``, ``bufferedAmountLowThreshold``, ``send``,
  ``close``, pyee-like ``on``/``once``/``remove_listener``/``emit``; ``createDataChannel``,
  ``connectionState``, ``iceConnectionState``, ``localDescription``...), every event
  delivered on the asyncio loop, in the order libwebrtc raised them.
* :class:`NativePeer`: :class:`~.stack.PeerConnection` on top of them, non-trickle (the
  local SDP has every candidate).

How events reach the loop: every libwebrtc callback (on libwebrtc's signaling thread, or
on its network thread for channel events with ``network_thread_callbacks=True``) appends
``(fn, args)`` to one per-loop FIFO (:class:`Dispatcher`) and wakes the loop once per
batch (``call_soon_threadsafe``); the loop runs the batch in order. A remote channel's
callbacks are registered inside libwebrtc's on_data_channel callback, ``on_message``
first (libwebrtc keeps a channel's messages only while *no* callback is registered: one
registered before ``on_message`` makes it drop them); the channel is handed to the
``datachannel`` listeners on the loop when it opens (libwebrtc announces it still
"connecting"; aiortc and browsers hand it over open), and any message that came first is
emitted right after that. So whoever listens in the ``datachannel`` callback sees every
message, in order.

Known limits of reactor-webrtc 0.24.2 this works around or cannot fix (measured when the
stack was chosen; the README's WebRTC stacks section has the figures):

* no loopback candidates (libwebrtc's default network_ignore_mask, not configurable), no
  way to choose the interfaces: ``hosts`` only filters what we *advertise*; sockets are
  still bound on every non-loopback interface and checks leave from them (the pair can
  end up on an unadvertised address, peer-reflexive); a host with only loopback gathers
  nothing and the connection stays "new" forever (reported in ``gathering_failures``);
* ``TcpCandidatePolicy.Disabled`` does not disable TCP candidates: we strip them from the
  SDP we send (the listening TCP sockets still exist);
* no ``localDescription`` getter with candidates: we splice the trickled candidates into
  the SDP ourselves (never ``a=end-of-candidates`` alone: aiortc then gathers nothing);
* concurrent gatherings in one process multiply the sockets each connection keeps: we
  serialise gathering (:data:`SERIALIZE_GATHERING`);
* ``on_buffered_amount_low`` fires on every change at or under the threshold: we turn it
  into aiortc's once-per-crossing ``bufferedamountlow``;
* a send over the 16 MiB buffer or over the peer's max-message-size raises RuntimeError
  *and closes the channel* (libwebrtc); ``DataChannelQueueFull`` is for chunked channels only;
* no ``PeerConnection.close()``: closing = closing the channels and dropping every
  reference to the native peer connection (its destructor calls libwebrtc's Close());
  peer connections still alive at interpreter exit can abort the process: an atexit hook
  destroys them first;
* no ICE connection state callback: ``iceConnectionState`` is derived from the
  connection state; stats name only the local candidate type of the selected pair;
* ``create_data_channel(label)`` takes no options: channels are always ordered and
  reliable, negotiated in band;
* one PeerConnectionFactory per process (a second one raises RuntimeError);
* exceptions raised in reactor-webrtc callbacks are swallowed silently: ours only post
  to the loop, and listener errors are logged by the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import reactor_webrtc as rw

from .ice import IceServer
from .native_channel import Dispatcher, Emitter, InvalidStateError, NativeDataChannel, dc_state, factory, live
from .stack import Channel, Gathered, PeerStack, W3cPeer, path_of

__all__ = ["STACK", "NativePeer", "NativePeerConnection", "NativeStack", "filter_candidates", "splice_candidates"]

log = logging.getLogger("rxchannel.webrtc.native")

# ------------------------------------------------------------------ SDP helpers

_CANDIDATE_FIELDS = re.compile(r"^(?:a=)?candidate:\S+ (\d+) (\S+) \d+ (\S+) (\d+) typ (\S+)")


def filter_candidates(
    candidates: Sequence[tuple[int, str]],
    hosts: Sequence[str] | None = None,
    udp_ports: tuple[int, int] | None = None,
) -> list[tuple[int, str]]:
    """The candidates to advertise: UDP only, host candidates only on ``hosts`` (when
    given), inside ``udp_ports`` (when given; libwebrtc already binds there)."""
    kept = []
    for mline, cand in candidates:
        m = _CANDIDATE_FIELDS.match(cand)
        if m is None:
            continue
        _component, proto, address, port, typ = m.groups()
        if proto.lower() != "udp":
            continue
        if typ == "host" and hosts is not None and address not in hosts:
            continue
        if typ == "host" and udp_ports is not None and not udp_ports[0] <= int(port) <= udp_ports[1]:
            continue
        kept.append((mline, cand))
    return kept


def splice_candidates(sdp: str, candidates: Sequence[tuple[int, str]], end: bool = True) -> str:
    """``sdp`` with ``a=candidate`` lines (and ``a=end-of-candidates``) at the end of the
    m-section each candidate belongs to."""
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    for index, section in enumerate(sections[1:]):
        section[:] = [ln for ln in section if not ln.startswith(("a=candidate:", "a=end-of-candidates"))]
        mine = ["a=" + c if not c.startswith("a=") else c for mline, c in candidates if mline == index]
        section.extend(mine)
        if end and mine:
            # not with zero candidates: aioice then prunes the component and an aiortc
            # answerer gathers nothing at all (its answer has no candidate either)
            section.append("a=end-of-candidates")
    return "\r\n".join(line for section in sections for line in section) + "\r\n"


# ------------------------------------------------------------------ the peer connection

_PC_STATES = {
    "New": "new",
    "Connecting": "connecting",
    "Connected": "connected",
    "Disconnected": "disconnected",
    "Failed": "failed",
    "Closed": "closed",
}
#: connectionState -> the iceConnectionState it implies (reactor-webrtc has no ICE state callback)
_ICE_FROM_PC = {
    "new": "new",
    "connecting": "checking",
    "connected": "connected",
    "disconnected": "disconnected",
    "failed": "failed",
    "closed": "closed",
}


#: One gathering at a time per process (per loop). libwebrtc's shared network manager tells
#: every session still gathering that the networks changed whenever another peer connection
#: starts, and each then gathers again and keeps the extra sockets for its whole life: 25
#: concurrent pairs held 1558 sockets instead of ~150 (socket_census.py). Serialised, each
#: peer connection keeps one UDP socket per interface (plus libwebrtc's TCP listeners).
SERIALIZE_GATHERING = True


class _NoLock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _gathering_lock(loop: asyncio.AbstractEventLoop) -> Any:
    return Dispatcher.of(loop).gathering_lock if SERIALIZE_GATHERING else _NoLock()


class NativePeerConnection(Emitter):
    """A reactor-webrtc peer connection with (part of) aiortc's ``RTCPeerConnection`` surface.

    Events on the loop: ``datachannel`` (channel), ``connectionstatechange``,
    ``iceconnectionstatechange``, ``icegatheringstatechange``.

    Args:
        ice_servers: ``rw.IceServer`` entries, or (urls, username, credential) tuples.
        udp_ports: ``(lo, hi)``: libwebrtc binds its candidates' sockets in this range.
            Fixed when the native peer connection is created (on the first
            :meth:`createDataChannel`, offer or answer).
        hosts: advertise only host candidates on these addresses (libwebrtc still binds
            and sends checks on every non-loopback interface: see the module doc).
        gather_timeout: seconds to wait for ICE gathering to complete.
        receiving_timeout_ms: libwebrtc's ice_connection_receiving_timeout (0: its default);
            with check_interval_ms (ice_check_interval_strong_connectivity), how soon a
            vanished peer is noticed (a killed peer goes disconnected after ~7 s, failed after ~17 s).
    """

    def __init__(
        self,
        ice_servers: Sequence[Any] = (),
        *,
        udp_ports: tuple[int, int] | None = None,
        hosts: Sequence[str] | None = None,
        gather_timeout: float = 10.0,
        receiving_timeout_ms: int = 0,
        check_interval_ms: int = 0,
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        super().__init__()
        self._loop = loop or asyncio.get_running_loop()
        self._dispatcher = Dispatcher.of(self._loop)
        self._ice_servers = [
            s
            if isinstance(s, rw.IceServer)
            else rw.IceServer(urls=list(s[0]), username=s[1] or "", password=s[2] or "")
            for s in ice_servers
        ]
        self.udp_ports = udp_ports
        self.hosts = list(hosts) if hosts is not None else None
        self.gather_timeout = gather_timeout
        self.receiving_timeout_ms = receiving_timeout_ms
        self.check_interval_ms = check_interval_ms
        self._raw: rw.PeerConnection | None = None
        self._observer: rw.PeerConnectionObserver | None = None
        self._channels: list[NativeDataChannel] = []
        self._pending_channels: list[NativeDataChannel] = []
        self.connectionState = "new"
        self.iceConnectionState = "new"
        self.iceGatheringState = "new"
        self._candidates: list[tuple[int, str]] = []
        #: what gathering could not do (rxchannel's Gathered.failures)
        self.gathering_failures: list[str] = []
        self._gathered = asyncio.Event()
        self._local_sdp: str | None = None
        self._local_type: str | None = None
        self._remote_sdp: str | None = None
        self._remote_type: str | None = None
        self._closed = False

    # -- the native object, made on first need (so udp_ports can still be set)

    def _native(self) -> rw.PeerConnection:
        if self._closed:
            raise InvalidStateError("RTCPeerConnection is closed")
        if self._raw is None:
            lo, hi = self.udp_ports or (0, 0)
            config = rw.RtcConfiguration(
                ice_servers=self._ice_servers,
                min_port=lo,
                max_port=hi,
                tcp_candidate_policy=rw.TcpCandidatePolicy.Disabled,  # (ignored by 0.24.2: TCP is gathered anyway)
                dc_chunking=False,
                frame_metadata=False,  # keep the private a=x-reactor-frame-metadata out of the SDP
                ice_connection_receiving_timeout_ms=self.receiving_timeout_ms,
                ice_check_interval_strong_connectivity_ms=self.check_interval_ms,
            )
            observer = rw.PeerConnectionObserver()
            post = self._dispatcher.post
            # these run on libwebrtc's signaling thread: post to the loop, nothing else
            observer.on_connection_state_change = lambda s: post(self._on_pc_state, str(s))
            observer.on_ice_gathering_change = lambda s: post(self._on_gathering, str(s))
            observer.on_ice_candidate = lambda c: post(self._on_candidate, c.sdp_mline_index or 0, c.candidate)
            observer.on_data_channel = self._on_raw_data_channel
            self._observer = observer
            self._raw = factory().create_peer_connection(config, observer)
            live.add(self)
            for channel in self._pending_channels:
                channel._attach(self._raw.create_data_channel(channel.label))
            self._pending_channels.clear()
        return self._raw

    # -- libwebrtc callbacks

    def _on_raw_data_channel(self, raw: rw.DataChannel) -> None:
        # On libwebrtc's signaling thread, with the channel still "connecting". Register its
        # callbacks at once (before this returns, so libwebrtc has a listener before it can
        # deliver anything); the loop hands the channel over when its "open" arrives, and
        # keeps any message that came first until then (see NativeDataChannel._on_open).
        channel = NativeDataChannel(self._dispatcher, raw.label())
        channel._announce = self._on_data_channel
        channel._attach(raw)
        if dc_state(raw.state()) == "open":  # already open: no on_open will come
            self._dispatcher.post(channel._on_open)

    def _on_data_channel(self, channel: NativeDataChannel) -> None:
        if self._closed:
            return
        self._channels.append(channel)
        self.emit("datachannel", channel)

    def _on_pc_state(self, raw: str) -> None:
        state = _PC_STATES.get(raw.rpartition(".")[2], "failed")
        if self._closed and state != "closed":
            return
        if state != self.connectionState:
            self.connectionState = state
            self.emit("connectionstatechange")
        ice = _ICE_FROM_PC[state]
        if ice != self.iceConnectionState:
            self.iceConnectionState = ice
            self.emit("iceconnectionstatechange")

    def _on_gathering(self, raw: str) -> None:
        state = raw.rpartition(".")[2].lower()
        if state != self.iceGatheringState:
            self.iceGatheringState = state
            self.emit("icegatheringstatechange")
        if state == "complete":
            self._gathered.set()

    def _on_candidate(self, mline: int, candidate: str) -> None:
        self._candidates.append((mline, candidate))

    # -- aiortc-like surface

    def createDataChannel(self, label: str, ordered: bool = True, **options: Any) -> NativeDataChannel:  # noqa: N802
        """An ordered, reliable, in-band channel (reactor-webrtc takes no other options)."""
        if not ordered or any(options.get(k) is not None for k in ("maxRetransmits", "maxPacketLifeTime", "id")):
            raise NotImplementedError("reactor-webrtc 0.24.2 creates ordered, reliable, in-band channels only")
        channel = NativeDataChannel(self._dispatcher, label)
        self._channels.append(channel)
        if self._raw is None:
            self._pending_channels.append(channel)  # created with the native pc (offer time), so
            # that udp_ports given to offer() still apply
        else:
            channel._attach(self._raw.create_data_channel(label))
        return channel

    @property
    def localDescription(self) -> rw.SessionDescription | None:  # noqa: N802
        return None if self._local_sdp is None else rw.SessionDescription(self._local_type or "offer", self._local_sdp)

    @property
    def remoteDescription(self) -> rw.SessionDescription | None:  # noqa: N802
        return (
            None if self._remote_sdp is None else rw.SessionDescription(self._remote_type or "answer", self._remote_sdp)
        )

    async def _set_local_gathered(self, description: rw.SessionDescription) -> str:
        await self._native().set_local_description(description)
        try:
            await asyncio.wait_for(self._gathered.wait(), self.gather_timeout)
        except TimeoutError:
            log.warning("ICE gathering did not complete within %s s; sending what was gathered", self.gather_timeout)
        advertised = filter_candidates(self._candidates, self.hosts, self.udp_ports)
        udp = filter_candidates(self._candidates)
        if not udp:
            self.gathering_failures.append(
                "no UDP candidate was gathered: the --udp-ports range is full, or this host has no "
                "non-loopback interface (libwebrtc never gathers on loopback)"
            )
        elif not advertised:
            self.gathering_failures.append(
                f"none of the gathered addresses ({', '.join(sorted({c.split()[4] for _, c in udp}))}) is in "
                f"{self.hosts}: advertising no candidate (libwebrtc cannot gather on loopback); the "
                "connection can still form from this side's checks if the peer advertises a reachable address"
            )
        self._local_sdp = splice_candidates(description.sdp, advertised)
        self._local_type = description.kind
        return self._local_sdp

    async def create_offer_gathered(self) -> str:
        """Create the offer, set it locally, wait for gathering; the SDP with its candidates."""
        async with _gathering_lock(self._loop):
            pc = self._native()
            return await self._set_local_gathered(await pc.create_offer())

    async def create_answer_gathered(self, offer_sdp: str) -> str:
        """Set the remote offer, answer it, wait for gathering; the answer's SDP with its candidates."""
        async with _gathering_lock(self._loop):
            await self.setRemoteDescription(offer_sdp, "offer")
            return await self._set_local_gathered(await self._native().create_answer())

    async def setRemoteDescription(self, sdp: str, kind: str) -> None:  # noqa: N802
        """Raises ValueError when libwebrtc refuses the SDP."""
        try:
            await self._native().set_remote_description(rw.SessionDescription(kind, sdp))
        except RuntimeError as exc:
            raise ValueError(str(exc)) from None
        self._remote_sdp, self._remote_type = sdp, kind

    async def addIceCandidate(self, candidate: str, sdp_mid: str | None = "0", sdp_mline_index: int | None = 0) -> None:  # noqa: N802
        await self._native().add_ice_candidate(rw.IceCandidate(candidate, sdp_mid, sdp_mline_index))

    async def getStats(self) -> rw.StatsReport | None:  # noqa: N802
        return None if self._raw is None or self._closed else await self._raw.get_stats()

    def _release(self) -> list[NativeDataChannel]:
        """Close the native channels and drop every native object (libwebrtc's Close() runs
        in the peer connection's destructor: reactor-webrtc 0.24.2 has no close())."""
        self._closed = True
        live.discard(self)
        channels = list(dict.fromkeys(self._channels + self._pending_channels))
        for channel in channels:
            raw = channel._raw
            if raw is not None and channel.readyState not in ("closing", "closed"):
                with contextlib.suppress(Exception):  # already closed under us
                    raw.close()
            channel._raw = None
        self._raw = None
        self._observer = None
        return channels

    async def close(self) -> None:
        """Close every channel and the peer connection (by dropping the native object)."""
        if self._closed:
            return
        channels = self._release()
        await asyncio.sleep(0)  # let the destructor's callbacks reach the dispatcher
        for channel in channels:
            channel._force_closed()
        self._on_pc_state("Closed")


# ------------------------------------------------------------------ rxchannel's stack.PeerConnection


class NativePeer(W3cPeer):
    """:class:`~.stack.PeerConnection` on reactor-webrtc."""

    stack = "native"
    pc: NativePeerConnection

    def __init__(self, ice_servers: Sequence[IceServer | str] = ()):
        servers = [s if isinstance(s, IceServer) else IceServer.parse(s) for s in ice_servers]
        self.pc = NativePeerConnection([(list(s.urls), s.username, s.credential) for s in servers])

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    @property
    def ice_state(self) -> str:
        return self.pc.iceConnectionState

    @property
    def local_sdp(self) -> str | None:
        return self.pc._local_sdp

    @property
    def remote_sdp(self) -> str | None:
        return self.pc._remote_sdp

    def create_channel(self, label: str) -> Channel:
        return self.pc.createDataChannel(label, ordered=True)

    def _settings(self, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None) -> None:
        if self.pc._raw is not None and udp_ports is not None and udp_ports != self.pc.udp_ports:
            raise RuntimeError("udp_ports must be known before the native peer connection exists")
        self.pc.udp_ports = udp_ports
        self.pc.hosts = list(hosts) if hosts is not None else None

    async def offer(self, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None) -> Gathered:
        self._settings(hosts, udp_ports)
        await self.pc.create_offer_gathered()
        return Gathered(list(self.pc.gathering_failures))

    async def answer(self, offer_sdp: str, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None) -> Gathered:
        self._settings(hosts, udp_ports)
        await self.pc.create_answer_gathered(offer_sdp)
        return Gathered(list(self.pc.gathering_failures))

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(answer_sdp, "answer")

    def transport_closed(self) -> bool:
        return self.pc.connectionState in ("failed", "closed") or self.pc._closed

    def candidate_types(self) -> tuple[str, str] | None:
        return self._types

    _types: tuple[str, str] | None = None

    async def selected_path(self) -> str:
        """libwebrtc's stats name the local candidate type of the selected pair only: the path
        is said from this side (a peer relayed through its own TURN server shows as host)."""
        stats = await self.pc.getStats()
        for pair in stats.candidate_pairs if stats is not None else ():
            if pair.nominated:
                self._types = (str(pair.local_candidate_type).rpartition(".")[2].lower(), "?")
                break
        return path_of(self)


class NativeStack(PeerStack):
    name = "native"
    connection_class = NativePeer


STACK = NativeStack()
