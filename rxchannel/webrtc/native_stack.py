"""The native stack: libwebrtc compiled (the ``reactor-webrtc`` package, extra ``[native]``).

libwebrtc's DataChannels move several times what aiortc's pure-Python SCTP does, for a
seventh of the CPU (the benchmarks in ``docs/benchmarks.md``). Two layers:

* :class:`NativeDataChannel` / :class:`NativePeerConnection`: aiortc-shaped objects
  (``readyState``, ``bufferedAmount``, ``bufferedAmountLowThreshold``, ``send``,
  ``close``, pyee-like ``on``/``once``/``remove_listener``/``emit``; ``createDataChannel``,
  ``connectionState``, ``iceConnectionState``, ``localDescription``...), every event
  delivered on the asyncio loop, in the order libwebrtc raised them.
* :class:`NativePeer`: :class:`~.stack.PeerConnection` on top of them, non-trickle (the
  local SDP has every candidate).

How events reach the loop: every libwebrtc callback (on libwebrtc's signaling thread, or
on its network thread for channel events with ``network_thread_callbacks=True``) appends
``(fn, args)`` to one per-loop FIFO (:class:`_Dispatcher`) and wakes the loop once per
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
import atexit
import contextlib
import gc
import logging
import re
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import reactor_webrtc as rw

from .ice import IceServer
from .stack import Channel, Gathered, PeerConnection, path_of

__all__ = [
    "STACK",
    "NativeDataChannel",
    "NativePeer",
    "NativePeerConnection",
    "NativeStack",
    "factory",
    "filter_candidates",
    "splice_candidates",
]

log = logging.getLogger("rxchannel.webrtc.native")

# ------------------------------------------------------------------ the factory (one per process)

_factory: rw.PeerConnectionFactory | None = None
_factory_options: dict[str, Any] = {}
_factory_lock = threading.Lock()


def factory(
    *, network_thread_callbacks: bool | None = None, sctp_low_latency: bool | None = None
) -> rw.PeerConnectionFactory:
    """The process's PeerConnectionFactory (reactor-webrtc allows one alive at a time).

    Built on first use with these options (None: off); later calls that name an option must
    name the value it was built with (a factory cannot be changed once built), calls that
    name none get it as it is. Chunking is never enabled: it is a private extension
    (``a=x-reactor-dc-chunking``) no other stack speaks.
    """
    global _factory
    asked = {"network_thread_callbacks": network_thread_callbacks, "sctp_low_latency": sctp_low_latency}
    with _factory_lock:
        if _factory is not None and all(v is None for v in asked.values()):
            return _factory
        options = {k: bool(v) for k, v in asked.items()}
        if _factory is not None:
            options = {k: (_factory_options[k] if v is None else bool(v)) for k, v in asked.items()}
        if _factory is None:
            builder = rw.PeerConnectionFactoryBuilder()
            if network_thread_callbacks:
                builder.with_dc_callbacks_on_network_thread(True)
            if sctp_low_latency:
                builder.with_sctp_tuning(low_latency=True)
            _factory = builder.build()
            _factory_options.update(options)
        elif options != _factory_options:
            raise RuntimeError(f"the process's factory was built with {_factory_options}, not {options}")
        return _factory


def drop_factory() -> None:
    """Forget the process's factory (it is destroyed once no peer connection uses it)."""
    global _factory
    with _factory_lock:
        _factory = None
        _factory_options.clear()


#: every native peer connection not closed yet (for the exit hook below)
_live: weakref.WeakSet[NativePeerConnection] = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    """Destroy every native peer connection and the factory before the interpreter finalizes.

    A peer connection still alive at finalization gets a data-channel callback on libwebrtc's
    signaling thread while Python is shutting down, and reactor-webrtc 0.24.2 then aborts the
    process ("panic in a function that cannot unwind" in dc_on_state_change/dc_on_message,
    SIGABRT; 3 of 20 exits with open connections). Here the interpreter is
    still whole: their callbacks run (and find the loop closed) before it goes.
    """
    for pc in list(_live):
        pc._release()
    drop_factory()
    gc.collect()


# ------------------------------------------------------------------ loop delivery


class _Dispatcher:
    """A FIFO from libwebrtc's threads to one asyncio loop: order kept, one wake-up per batch."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Dispatcher]] = weakref.WeakKeyDictionary()
    #: items run per loop callback before letting other callbacks run (a slow consumer can
    #: have thousands queued: libwebrtc keeps receiving whatever the loop does)
    BATCH = 256

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Dispatcher:
        d = cls._by_loop.get(loop)
        if d is None:
            d = cls._by_loop[loop] = cls(loop)
        return d

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self.gathering_lock = asyncio.Lock()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Called on any thread (a libwebrtc callback): run ``fn(*args)`` on the loop, after
        everything posted before."""
        with self._lock:
            self._queue.append((fn, args))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            with self._lock:
                self._queue.clear()
                self._scheduled = False

    def _run(self) -> None:
        queue = self._queue
        for _ in range(self.BATCH):
            with self._lock:
                if not queue:
                    self._scheduled = False
                    return
                fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception:  # a listener's bug must not stop delivery to the others
                log.exception("error in a WebRTC event listener")
        self.loop.call_soon(self._run)  # more queued: still scheduled, after the loop's other work


# ------------------------------------------------------------------ pyee-like events


class _Emitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[tuple[Callable[..., Any], bool]]] = {}

    def on(self, event: str, f: Callable[..., Any] | None = None) -> Any:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._listeners.setdefault(event, []).append((fn, False))
            return fn

        return add if f is None else add(f)

    add_listener = on

    def once(self, event: str, f: Callable[..., Any] | None = None) -> Any:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._listeners.setdefault(event, []).append((fn, True))
            return fn

        return add if f is None else add(f)

    def remove_listener(self, event: str, f: Callable[..., Any]) -> None:
        entries = self._listeners.get(event, [])
        for i, (fn, _) in enumerate(entries):
            if fn is f:
                del entries[i]
                return

    def remove_all_listeners(self, event: str | None = None) -> None:
        if event is None:
            self._listeners.clear()
        else:
            self._listeners.pop(event, None)

    def listeners(self, event: str) -> list[Callable[..., Any]]:
        return [fn for fn, _ in self._listeners.get(event, [])]

    def emit(self, event: str, *args: Any) -> bool:
        entries = self._listeners.get(event)
        if not entries:
            return False
        for entry in list(entries):
            fn, once = entry
            if once:
                try:
                    entries.remove(entry)
                except ValueError:
                    continue
            fn(*args)  # listeners are plain callables here (rxchannel registers no coroutine)
        return True


# ------------------------------------------------------------------ the data channel

_STATES = {
    "Connecting": "connecting",
    "Open": "open",
    "Closing": "closing",
    "Closed": "closed",
}


def _dc_state(raw_state: Any) -> str:
    return _STATES.get(str(raw_state).rpartition(".")[2], "closed")


class InvalidStateError(Exception):
    """Sending on a channel that is not open (aiortc raises its own InvalidStateError)."""


class NativeDataChannel(_Emitter):
    """A reactor-webrtc DataChannel with aiortc's ``RTCDataChannel`` surface.

    Events (on the loop, in libwebrtc's order): ``open``, ``message`` (bytes, or str for a
    text message), ``bufferedamountlow``, ``close``. ``readyState`` is the state as the loop
    has seen it: it becomes ``open`` when ``open`` is emitted, ``closed`` when ``close`` is.
    """

    def __init__(self, dispatcher: _Dispatcher, label: str, raw: rw.DataChannel | None = None):
        super().__init__()
        self._dispatcher = dispatcher
        self._label = label
        self._raw: rw.DataChannel | None = None
        self._state = "connecting"
        self._threshold = 0
        self._armed = False  # bufferedAmount went above the threshold since the last bufferedamountlow
        self._pending_close = False
        #: a remote channel: called with it when it opens (the pc's "datachannel" event)
        self._announce: Callable[[NativeDataChannel], None] | None = None
        self._early: list[bytes | str] = []
        if raw is not None:
            self._attach(raw)

    # -- wiring (runs on a libwebrtc thread for a remote channel, on the loop for a local one)

    def _attach(self, raw: rw.DataChannel) -> None:
        """Listen to ``raw`` from now on. Message first: registering on_message is what makes
        the binding deliver messages at all (a callback registered before it makes the binding drop them)."""
        self._raw = raw
        post = self._dispatcher.post
        raw.set_buffered_amount_low_threshold(self._threshold)
        raw.on_message(lambda data, binary: post(self._on_message, data, binary))
        raw.on_open(lambda: post(self._on_open))
        raw.on_close(lambda: post(self._on_close))
        raw.on_buffered_amount_low(self._raw_low)
        if self._pending_close:
            raw.close()

    def _on_message(self, data: bytes, binary: bool) -> None:
        message = data if binary else data.decode("utf-8", "replace")
        if self._announce is not None:  # a remote channel not handed over yet: keep its messages
            self._early.append(message)
            return
        self.emit("message", message)

    def _on_open(self) -> None:
        if self._state != "connecting":
            return
        self._state = "open"
        if self._announce is not None:
            # a remote channel: aiortc and browsers hand it over already open, with no "open"
            # event; hand it over now, then the messages that came with it, in order
            announce, self._announce = self._announce, None
            announce(self)
            early, self._early = self._early, []
            for message in early:
                self.emit("message", message)
            return
        self.emit("open")

    def _on_close(self) -> None:
        if self._announce is not None:  # closed before it opened: never handed over
            self._announce = None
            self._early.clear()
            self._state = "closed"
            log.info("a remote DataChannel closed before it opened")
            return
        if self._state != "closed":
            self._state = "closed"
            self.emit("close")

    def _raw_low(self) -> None:
        # on a libwebrtc thread, on every change of the buffered amount at or under the
        # threshold (every send of a small message, every SACK...): post only when a
        # crossing is awaited, so an idle-below-threshold channel costs no loop wake-ups
        if self._armed:
            self._dispatcher.post(self._on_low)

    def _on_low(self) -> None:
        # the binding calls back on every buffered-amount change at or under the
        # threshold; W3C fires once per crossing from above to at-or-under
        if self._armed and self.bufferedAmount <= self._threshold:
            self._armed = False
            self.emit("bufferedamountlow")

    # -- aiortc's RTCDataChannel surface

    @property
    def label(self) -> str:
        return self._label

    @property
    def readyState(self) -> str:  # noqa: N802
        return self._state

    @property
    def bufferedAmount(self) -> int:  # noqa: N802
        raw = self._raw
        return 0 if raw is None else int(raw.buffered_amount())

    @property
    def bufferedAmountLowThreshold(self) -> int:  # noqa: N802
        return self._threshold

    @bufferedAmountLowThreshold.setter
    def bufferedAmountLowThreshold(self, value: int) -> None:  # noqa: N802
        if value < 0 or value > 2**32 - 1:
            raise ValueError("bufferedAmountLowThreshold must be in range 0 - 4294967295")
        self._threshold = value
        if self._raw is not None:
            self._raw.set_buffered_amount_low_threshold(value)
            self._arm()  # aiortc: the next decrease to <= value fires

    @property
    def ordered(self) -> bool:
        return True if self._raw is None else bool(self._raw.ordered())

    @property
    def maxRetransmits(self) -> int | None:  # noqa: N802
        return None  # reactor-webrtc creates reliable channels only (raw.reliable() is True)

    @property
    def maxPacketLifeTime(self) -> int | None:  # noqa: N802
        return None

    @property
    def negotiated(self) -> bool:
        return False

    @property
    def protocol(self) -> str:
        return ""

    def send(self, data: bytes | bytearray | memoryview | str) -> None:
        if self._state != "open" or self._raw is None:
            raise InvalidStateError(f"RTCDataChannel readyState is not 'open' ({self._state})")
        if isinstance(data, str):
            self._raw.send(data.encode("utf-8"), False)
        else:
            self._raw.send(data if isinstance(data, bytes) else bytes(data), True)
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        """Await a crossing if the buffered amount is above the threshold now.

        With network-thread callbacks, libwebrtc may drain the buffer (and call _raw_low,
        which ignores it while unarmed) between our reading the amount and arming: so arm,
        then read again, and deliver the crossing ourselves if it already happened."""
        raw = self._raw
        if raw is None or raw.buffered_amount() <= self._threshold:
            return
        self._armed = True
        if raw.buffered_amount() <= self._threshold:
            self._dispatcher.post(self._on_low)

    def close(self) -> None:
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        if self._raw is None:
            self._pending_close = True
        else:
            self._raw.close()

    def _force_closed(self) -> None:
        """The peer connection closed: emit ``close`` if libwebrtc did not (runs on the loop)."""
        self._on_close()

    def stats(self) -> dict[str, Any]:
        return {"state": self._state, "raw_state": None if self._raw is None else str(self._raw.state())}


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
    return _Dispatcher.of(loop).gathering_lock if SERIALIZE_GATHERING else _NoLock()


class NativePeerConnection(_Emitter):
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
        self._dispatcher = _Dispatcher.of(self._loop)
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
            _live.add(self)
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
        if _dc_state(raw.state()) == "open":  # already open: no on_open will come
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
        _live.discard(self)
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


class NativePeer(PeerConnection):
    """:class:`~.stack.PeerConnection` on reactor-webrtc."""

    stack = "native"

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

    def on_channel(self, callback: Callable[[Channel], None]) -> None:
        self.pc.on("datachannel", callback)

    def on_state(self, callback: Callable[[], None]) -> None:
        self.pc.on("connectionstatechange", callback)

    def remove_state_listener(self, callback: Callable[[], None]) -> None:
        self.pc.remove_listener("connectionstatechange", callback)

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

    async def close(self) -> None:
        await self.pc.close()


class NativeStack:
    name = "native"

    def new_peer_connection(self, ice_servers: Sequence[IceServer]) -> PeerConnection:
        return NativePeer(ice_servers)


STACK = NativeStack()
