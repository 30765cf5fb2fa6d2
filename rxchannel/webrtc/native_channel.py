"""reactor-webrtc's DataChannels with aiortc's surface, their events on the asyncio loop.

The process's one PeerConnectionFactory, a FIFO from libwebrtc's threads to each loop
(order kept, one wake-up per batch), pyee-like events, and :class:`NativeDataChannel`.
What each works around is said where it is done; :mod:`.native_stack` builds peer
connections on them.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import reactor_webrtc as rw

__all__ = [
    "Dispatcher",
    "Emitter",
    "InvalidStateError",
    "NativeDataChannel",
    "dc_state",
    "drop_factory",
    "factory",
    "live",
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


class _Releasable(Protocol):
    def _release(self) -> object: ...


#: every native peer connection not closed yet (for the exit hook below)
live: weakref.WeakSet[_Releasable] = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    """Destroy every native peer connection and the factory before the interpreter finalizes.

    A peer connection still alive at finalization gets a data-channel callback on libwebrtc's
    signaling thread while Python is shutting down, and reactor-webrtc 0.24.2 then aborts the
    process ("panic in a function that cannot unwind" in dc_on_state_change/dc_on_message,
    SIGABRT; 3 of 20 exits with open connections). Here the interpreter is
    still whole: their callbacks run (and find the loop closed) before it goes.
    """
    for pc in list(live):
        pc._release()
    drop_factory()
    gc.collect()


# ------------------------------------------------------------------ loop delivery


class Dispatcher:
    """A FIFO from libwebrtc's threads to one asyncio loop: order kept, one wake-up per batch."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Dispatcher]] = weakref.WeakKeyDictionary()
    #: items run per loop callback before letting other callbacks run (a slow consumer can
    #: have thousands queued: libwebrtc keeps receiving whatever the loop does)
    BATCH = 256

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Dispatcher:
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


class Emitter:
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


def dc_state(raw_state: Any) -> str:
    return _STATES.get(str(raw_state).rpartition(".")[2], "closed")


class InvalidStateError(Exception):
    """Sending on a channel that is not open (aiortc raises its own InvalidStateError)."""


class NativeDataChannel(Emitter):
    """A reactor-webrtc DataChannel with aiortc's ``RTCDataChannel`` surface.

    Events (on the loop, in libwebrtc's order): ``open``, ``message`` (bytes, or str for a
    text message), ``bufferedamountlow``, ``close``. ``readyState`` is the state as the loop
    has seen it: it becomes ``open`` when ``open`` is emitted, ``closed`` when ``close`` is.
    """

    def __init__(self, dispatcher: Dispatcher, label: str, raw: rw.DataChannel | None = None):
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
        """The bytes queued to send. Reading it above the threshold arms ``bufferedamountlow``.

        Unlike W3C (where every send arms the event), only a read does: asking libwebrtc for
        the amount is a blocking hop to its network thread (~0.15 ms), paid here only by who
        asks, and every drain pattern (the transport's ``writable``/``drain``, a sender's
        ``while bufferedAmount <= threshold: send``) reads the amount before it waits."""
        raw = self._raw
        if raw is None:
            return 0
        amount = int(raw.buffered_amount())
        if amount > self._threshold and not self._armed:
            self._armed = True
            # libwebrtc may have drained it (calling _raw_low, which ignores it while unarmed)
            # between the read and the arming: read again, deliver the crossing ourselves
            if raw.buffered_amount() <= self._threshold:
                self._dispatcher.post(self._on_low)
        return amount

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
            self._armed = False
            _ = self.bufferedAmount  # aiortc: the next decrease to <= value fires (armed if above it now)

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
