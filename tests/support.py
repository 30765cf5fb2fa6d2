"""What tests share (helpers, not fixtures: those are in ``conftest.py``).

Transport and peer pairs over every transport, frame taps, deterministic test files,
fuzzing strategies for frames, waits that do not sleep for a fixed time, and a
virtual-time event loop for tests about time.
"""

from __future__ import annotations

import asyncio
import hashlib
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

import rxchannel as rx
from rxchannel.core import (
    CancelFrame,
    ErrorFrame,
    FrameType,
    KeepaliveFrame,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
    request_metadata,
)
from rxchannel.core._metadata import COMPOSITE_METADATA, OCTET_STREAM
from rxchannel.files import fetch_file, sha256_file
from rxchannel.transports import Transport, TransportLimits, memory_pair
from rxchannel.transports.tcp import TcpTransport, connect_tcp_transport, start_tcp_server

T = TypeVar("T")
#: the command line that runs rxchannel's CLI in a process of its own
RX = [sys.executable, "-m", "rxchannel"]

# ------------------------------------------------------------------ files


def make_file(path: Path, size: int, seed: int = 0) -> bytes:
    data = hashlib.shake_256(f"{seed}".encode()).digest(size) if size else b""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


# ------------------------------------------------------------------ hub processes


def serve_process(root: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``rxchannel serve root --port 0 *args`` in a process of its own, and the URL it prints."""
    proc = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def stop_process(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """Stop a process from :func:`serve_process` with SIGTERM (handled as Ctrl-C is); it must exit 0. Its stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return err


async def fetch_and_compare(peer: Any, name: str, root: Path, tmp: Path) -> None:
    """Fetch ``name`` over ``peer`` into ``tmp`` and check it against ``root / name``; then
    close ``peer``, whatever happened."""
    try:
        out = tmp / f"out-{time.monotonic_ns()}.bin"
        result = await fetch_file(peer, name, out, window=16)
        assert result.sha256 == sha256_file(root / name) == sha256_file(out)
    finally:
        await peer.close()


# ------------------------------------------------------------------ transport and peer pairs

PairFactory = Callable[[TransportLimits | None], Awaitable[tuple[Transport, Transport]]]
ConnectPeers = Callable[..., Awaitable[tuple[Any, Any]]]
#: cleanups (servers started for a pair) run after each test by conftest's autouse fixture
CLEANUPS: list[Callable[[], Awaitable[None]]] = []


async def _memory(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    return memory_pair(limits=limits, receive_buffer=1 << 20)


async def _memory_shaped(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    return memory_pair(limits=limits, latency=0.005, bandwidth=50e6, receive_buffer=1 << 20)


async def _tcp(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    accepted: asyncio.Future[TcpTransport] = asyncio.get_running_loop().create_future()
    server = await start_tcp_server(lambda t: accepted.set_result(t), "127.0.0.1", 0, limits)
    port = server.sockets[0].getsockname()[1]
    client = await connect_tcp_transport("127.0.0.1", port, limits)
    other = await accepted
    server.close()
    return client, other


async def _datachannel(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    from rxchannel.webrtc.signaling import datachannel_pair

    return await datachannel_pair(limits=limits, stack="aiortc")


def interface_address() -> str:
    """This machine's first non-loopback IPv4 address: the native WebRTC stack (libwebrtc)
    never gathers on loopback, so its tests run on a real interface (of this host only)."""
    from rxchannel.transports.addresses import interface_addresses

    found = interface_addresses()
    if not found:
        raise RuntimeError("the native WebRTC stack needs a non-loopback IPv4 interface, and this host has none")
    return found[0]


async def _datachannel_native(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    from rxchannel.webrtc.signaling import datachannel_pair

    return await datachannel_pair(limits=limits, stack="native", hosts=[interface_address()])


async def _websocket(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    from rxchannel.transports.websocket import listen_ws

    accepted: asyncio.Future[Transport] = asyncio.get_running_loop().create_future()
    listener = await listen_ws("127.0.0.1", 0, accepted.set_result, limits)
    CLEANUPS.append(listener.close)
    from rxchannel.transports.websocket import connect_websocket_transport

    client = await connect_websocket_transport(listener.url, limits)
    return client, await accepted


TRANSPORTS: dict[str, PairFactory] = {
    "websocket": _websocket,
    "memory": _memory,
    "memory-shaped": _memory_shaped,
    "tcp": _tcp,
    "datachannel": _datachannel,
    "datachannel-native": _datachannel_native,
}
#: Transports whose sender feels a reader that stops reading. A DataChannel does not:
#: aiortc delivers every message it receives, so there only RSocket credit bounds memory.
READER_BACKPRESSURE = ["memory", "memory-shaped", "tcp", "websocket"]
#: Transports a pair of peers can be joined over (real sockets and real aiortc, or in memory).
PEER_TRANSPORTS = ["memory", "tcp", "websocket", "datachannel"]


async def open_peers(kind: str, router: Any = None, config: Any = None, **pair_options: Any) -> tuple[Any, Any]:
    """A client-role and a server-role peer joined over ``kind``; the server serves ``router``."""
    from rxchannel.core import Role
    from rxchannel.runtime import Peer

    if kind == "memory":
        a, b = memory_pair(**pair_options)
    else:
        a, b = await TRANSPORTS[kind](pair_options.get("limits"))
    server = Peer(b, Role.SERVER, router=router or rx.Router(), config=config)
    client = Peer(a, Role.CLIENT, config=config)
    return client, server


def demand_of(conn: Any, stream_id: int) -> Any:
    """The demand of ``stream_id`` on a sans-IO connection, driven as the application drives it;
    an ended one when the stream is over (its verbs are then no-ops, as they are for the
    application, and ``request`` still refuses a non-positive n)."""
    from rxchannel.core import InboundDemand

    demand = conn.demand(stream_id)
    if demand is None:
        demand = InboundDemand()
        demand.end()
    return demand


# ------------------------------------------------------------------ sources and taps


class Counter:
    """A remote stream handler yielding ``int(request.data)`` numbers; it records how many
    items were pulled and whether its generator was closed (completion, error or cancel)."""

    def __init__(self) -> None:
        self.pulled = 0
        self.closed = asyncio.Event()

    async def __call__(self, request: rx.Request) -> AsyncIterator[bytes]:
        try:
            for i in range(int(request.data)):
                self.pulled += 1
                yield str(i).encode()
        finally:
            self.closed.set()


def serve_counter(router: rx.Router) -> Counter:
    """A :class:`Counter` serving the stream route ``n`` on ``router``."""
    source = Counter()
    router.stream("n")(source)
    return source


def serve_boom(router: rx.Router, message: str) -> None:
    """Serve the stream route ``boom`` on ``router``: one item ``b"1"``, then an
    :class:`~rxchannel.ApplicationError` saying ``message``."""

    @router.stream("boom")
    async def boom(request: rx.Request) -> AsyncIterator[bytes]:
        yield b"1"
        raise rx.ApplicationError(message)


class ErrorCatcher:
    """A remote channel handler that reads its inbound stream and records the error that ends
    it (``error`` resolves to it); it then yields ``b"never"``, which no requester should get."""

    def __init__(self) -> None:
        self.error: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def __call__(self, request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        try:
            async for _ in request.inbound:
                pass
        except rx.RemoteError as exc:
            self.error.set_result(exc)
        yield b"never"


class FrameTap:
    """Records every frame a peer's transport writes (the frames still go out unchanged)."""

    def __init__(self, peer: rx.Peer) -> None:
        self.frames: list[bytes] = []
        transport = peer.transport
        original = transport.write

        def write(frames: list[bytes]) -> None:
            self.frames.extend(frames)
            original(frames)

        transport.write = write  # type: ignore[method-assign]

    def decoded(self, stream_id: int | None = None) -> list[Any]:
        """The frames written, decoded (only those of ``stream_id`` if given)."""
        frames = [decode_frame(f) for f in self.frames]
        return [f for f in frames if stream_id is None or f.stream_id == stream_id]

    def request_n(self, stream_id: int) -> list[int]:
        """The REQUEST_N values written for ``stream_id``."""
        return [f.n for f in self.decoded(stream_id) if isinstance(f, RequestNFrame)]


class GuardedSource:
    """A request-stream handler yielding ``count`` items whose every pull checks the
    flow-control rules (docs/architecture.md): the source is never pulled more than one
    item beyond the credit the requester granted.

    The check runs at each pull, against the serving connection's own credit ledger, so a
    test does not have to sleep and hope to catch a violation.
    """

    def __init__(self, count: int, size: int = 8):
        self.count, self.size = count, size
        self.pulled = 0
        self.max_granted = 0
        self.violations: list[tuple[int, int]] = []
        self.closed = asyncio.Event()

    async def __call__(self, request: rx.Request) -> AsyncIterator[bytes]:
        connection = request.peer.connection  # type: ignore[attr-defined]
        try:
            for i in range(self.count):
                stream = connection.stream(request.stream_id)
                granted = stream.send_credit.sent + stream.send_credit.available if stream is not None else 0
                self.max_granted = max(self.max_granted, granted)
                self.pulled += 1
                if self.pulled > granted + 1:
                    self.violations.append((self.pulled, granted))
                yield i.to_bytes(4, "big") * (self.size // 4)
        finally:
            self.closed.set()


# ------------------------------------------------------------------ waiting without fixed sleeps


class Collect:
    """An observer that records everything and resolves ``done`` at the terminal signal."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.terminals: list[str] = []
        self.error: BaseException | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_item: Any = None
        self.closed = False
        self.after_close: list[Any] = []

    def on_next(self, item: Any) -> None:
        assert not self.terminals, "an item after the terminal signal"
        if self.closed:
            self.after_close.append(item)
        self.items.append(item)
        if self.on_item is not None:
            self.on_item(item)

    def on_error(self, error: BaseException) -> None:
        self.terminals.append("error")
        self.error = error
        if not self.done.done():
            self.done.set_result(None)

    def on_completed(self) -> None:
        self.terminals.append("completed")
        if not self.done.done():
            self.done.set_result(None)

    async def wait(self, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            await self.done
        assert len(self.terminals) == 1


async def eventually(condition: Callable[[], bool], *, timeout: float = 10, what: str = "the condition") -> None:
    """Wait until ``condition()`` holds, re-checking on every loop turn (never a fixed sleep).

    Raises:
        AssertionError: it did not hold within ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.001)


def wait_until(condition: Callable[[], bool], *, timeout: float = 30, what: str = "the condition") -> None:
    """:func:`eventually` for synchronous tests watching another process (a file it writes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.005)


async def collect(stream: rx.RemoteStream, timeout: float = 10) -> list[rx.Payload]:
    """Every item of ``stream`` until it ends; a missing end fails the test, never hangs it."""
    async with asyncio.timeout(timeout):
        return [item async for item in stream]


# ------------------------------------------------------------------ virtual time


class _InstantSelector(selectors.DefaultSelector):
    """Never blocks while a timer is pending: it moves the loop's clock to the timer instead."""

    def __init__(self, loop: VirtualTimeLoop):
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._loop.advance(timeout)
        elif not ready and timeout is None:
            ready = super().select(None)  # nothing scheduled: wait for I/O (a thread's result)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing is ready to run.

    For in-process tests about time (keepalive deadlines, latency, rates): ``loop.time()``
    is the only clock the runtime reads, so a one-minute deadline passes in milliseconds,
    and timings are exact and repeatable. Only for tests without real sockets or threads
    that take real time.
    """

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_InstantSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


async def settle() -> None:
    """In virtual time: return once every task that can run has run (time moves only then)."""
    assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop), "settle() is for virtual time only"
    await asyncio.sleep(0.001)


def run_in_virtual_time(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a :class:`VirtualTimeLoop`."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def silence_after_setup(server: Callable[[Transport], Any], setup: SetupFrame) -> tuple[BaseException | None, float]:
    """In virtual time: ``setup`` then silence, written to a server peer that ``server`` makes of
    its end of a memory pair. The error the server closed with, and how long after the SETUP."""

    async def main() -> tuple[BaseException | None, float]:
        a, b = memory_pair()
        peer = server(b)
        a.write([encode_frame(setup)])
        start = asyncio.get_running_loop().time()
        error = await peer.wait_closed()
        elapsed = asyncio.get_running_loop().time() - start
        await peer.close()
        a.abort()
        return error, elapsed

    return run_in_virtual_time(main)


# ------------------------------------------------------------------ frames written by hand


def setup_frame(*, keepalive_ms: int = 10_000, lifetime_ms: int = 30_000, **fields: Any) -> SetupFrame:
    """A SETUP with the MIME types rxchannel's own client sends (composite metadata, octet-stream data)."""
    return SetupFrame(
        keepalive_ms=keepalive_ms,
        lifetime_ms=lifetime_ms,
        metadata_mime=COMPOSITE_METADATA,
        data_mime=OCTET_STREAM,
        **fields,
    )


def request_to(route: str, stream_id: int, kind: FrameType, **fields: Any) -> RequestFrame:
    """A request frame of ``kind`` for ``route``, named in its composite routing metadata."""
    return RequestFrame(stream_id=stream_id, type=kind, metadata=request_metadata(route), **fields)


# ------------------------------------------------------------------ fuzzing frames

VALID = [
    encode_frame(f)  # type: ignore[arg-type]
    for f in (
        SetupFrame(keepalive_ms=100, lifetime_ms=1000, metadata_mime="a", data_mime="b", metadata=b"m"),
        request_to("r", 1, FrameType.REQUEST_STREAM, initial_n=4, data=b"x"),
        RequestFrame(stream_id=3, type=FrameType.REQUEST_CHANNEL, initial_n=1, data=b"c", follows=True),
        RequestNFrame(stream_id=2, n=3),
        PayloadFrame(stream_id=2, data=b"d" * 40, metadata=b"mm", follows=True),
        PayloadFrame(stream_id=2, data=b"", next=False, complete=True),
        CancelFrame(stream_id=1),
        ErrorFrame(stream_id=0, code=0x101, message="x"),
        KeepaliveFrame(respond=True, data=b"k"),
    )
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
        if op == "flip" and raw:
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del raw[draw(st.integers(0, len(raw))) :]
        elif op == "extend":
            raw += draw(st.binary(max_size=20))
        elif raw:
            i = draw(st.integers(0, len(raw) - 1))
            raw[i : i + 1] = draw(st.binary(max_size=4))
    return bytes(raw)


frames = st.one_of(st.binary(max_size=64), mutated(), st.sampled_from(VALID))
