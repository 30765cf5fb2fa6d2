"""Interop with rsocket-py (an independent RSocket implementation) over real TCP, both directions.

rsocket-py is the oracle: if our frames, metadata, credits or fragments were off, its
parser or its state machine would fail these exchanges.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from reactivestreams.subscriber import Subscriber
from reactivestreams.subscription import Subscription
from rsocket.extensions.helpers import composite, route
from rsocket.extensions.mimetypes import WellKnownMimeTypes
from rsocket.helpers import create_future, single_transport_provider
from rsocket.payload import Payload as PyPayload
from rsocket.routing.request_router import RequestRouter
from rsocket.routing.routing_request_handler import RoutingRequestHandler
from rsocket.rsocket_client import RSocketClient
from rsocket.rsocket_server import RSocketServer
from rsocket.streams.stream_from_async_generator import StreamFromAsyncGenerator
from rsocket.transports.tcp import TransportTCP

import rxchannel as rx
from rxchannel.core import ConnectionConfig

BLOB = bytes(range(256)) * 1200  # 300 KiB: fragmented by both sides below
COMPOSITE = WellKnownMimeTypes.MESSAGE_RSOCKET_COMPOSITE_METADATA


def meta(path: str) -> bytes:
    return composite(route(path))


class CountingSubscriber(Subscriber):  # type: ignore[misc]
    """An rsocket-py subscriber with a fixed window that checks credit on every item."""

    def __init__(self, window: int, stop_after: int | None = None):
        self.window, self.stop_after = window, stop_after
        self.requested = 0
        self.items: list[bytes] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.violations = 0

    def on_subscribe(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.requested += self.window
        subscription.request(self.window)

    def on_next(self, value: PyPayload, is_complete: bool = False) -> None:
        self.items.append(value.data)
        if len(self.items) > self.requested:
            self.violations += 1
        if self.stop_after is not None and len(self.items) == self.stop_after:
            self.subscription.cancel()
            self.done.set_result(None)
            return
        if len(self.items) == self.requested:  # window used up: grant another
            self.requested += self.window
            self.subscription.request(self.window)
        if is_complete and not self.done.done():
            self.done.set_result(None)

    def on_error(self, exception: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exception)

    def on_complete(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


# ------------------------------------------------------------------ rsocket-py client -> rxchannel server


def our_router() -> tuple[rx.Router, dict[str, Any]]:
    router = rx.Router()
    state: dict[str, Any] = {"pulled": 0, "closed": asyncio.Event(), "fnf": asyncio.Queue()}

    @router.response("echo")
    def echo(req: rx.Request) -> bytes:
        return req.data[::-1]

    @router.response("blob")
    def blob(req: rx.Request) -> bytes:
        assert req.data == BLOB
        return BLOB

    @router.response("fail")
    def fail(req: rx.Request) -> bytes:
        raise rx.ApplicationError("nope, on purpose")

    @router.fire_and_forget("fnf")
    def fnf(req: rx.Request) -> None:
        state["fnf"].put_nowait(req.data)

    @router.stream("count")
    async def count(req: rx.Request) -> AsyncIterator[bytes]:
        try:
            for i in range(int(req.data)):
                state["pulled"] += 1
                yield str(i).encode()
        finally:
            state["closed"].set()

    @router.channel("upper")
    async def upper(req: rx.Request) -> AsyncIterator[bytes]:
        assert req.inbound is not None
        async for item in req.inbound:
            yield item.data.upper()

    @router.channel("exact", window=rx.Manual(EXACT))
    async def exact(req: rx.Request) -> AsyncIterator[bytes]:
        """Grants exactly EXACT items (the requester must complete without more), then sends EXACT."""
        assert req.inbound is not None
        state["inbound"] = [item.data async for item in req.inbound]
        for i in range(EXACT):
            yield f"r{i}".encode()

    return router, state


EXACT = 17


class ExactSubscriber(Subscriber):  # type: ignore[misc]
    """Requests ``n`` once and never again; resolves ``done`` on the stream's end."""

    def __init__(self, n: int):
        self.n = n
        self.items: list[bytes] = []
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_subscribe(self, subscription: Subscription) -> None:
        subscription.request(self.n)

    def on_next(self, value: PyPayload, is_complete: bool = False) -> None:
        self.items.append(value.data)
        if is_complete and not self.done.done():
            self.done.set_result("next+complete")

    def on_error(self, exception: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exception)

    def on_complete(self) -> None:
        if not self.done.done():
            self.done.set_result("complete")


@pytest.fixture
async def rsocket_py_client() -> AsyncIterator[tuple[RSocketClient, dict[str, Any]]]:
    router, state = our_router()
    server = await rx.serve_tcp(router, config=ConnectionConfig(max_frame_size=4096))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    client = RSocketClient(
        single_transport_provider(TransportTCP(reader, writer)),
        metadata_encoding=COMPOSITE,
        fragment_size_bytes=1024,
    )
    async with client:
        yield client, state
    await server.close()


async def test_py_client_request_response_and_fragmented_payloads(rsocket_py_client: Any) -> None:
    client, _ = rsocket_py_client
    reply = await client.request_response(PyPayload(b"hello", meta("echo")))
    assert reply.data == b"olleh"
    reply = await client.request_response(PyPayload(BLOB, meta("blob")))
    assert reply.data == BLOB


async def test_py_client_fire_and_forget(rsocket_py_client: Any) -> None:
    client, state = rsocket_py_client
    await client.fire_and_forget(PyPayload(b"note", meta("fnf")))
    async with asyncio.timeout(5):
        assert await state["fnf"].get() == b"note"


async def test_py_client_request_stream_with_limited_demand(rsocket_py_client: Any) -> None:
    client, state = rsocket_py_client
    sub = CountingSubscriber(window=3)
    client.request_stream(PyPayload(b"50", meta("count"))).initial_request_n(3).subscribe(sub)
    async with asyncio.timeout(10):
        await sub.done
    assert sub.items == [str(i).encode() for i in range(50)]
    assert sub.violations == 0, "our server sent more than rsocket-py requested"


@pytest.mark.parametrize("count", [EXACT, 1, 0])
async def test_py_client_granting_exactly_n_gets_n_items_and_complete(rsocket_py_client: Any, count: int) -> None:
    client, _ = rsocket_py_client
    sub = ExactSubscriber(max(count, 1))
    client.request_stream(PyPayload(str(count).encode(), meta("count"))).initial_request_n(sub.n).subscribe(sub)
    async with asyncio.timeout(10):
        await sub.done
    assert sub.items == [str(i).encode() for i in range(count)]


async def test_py_client_exact_demand_on_a_file_gets_complete_with_the_last_chunk(tmp_path: Any) -> None:
    from rxchannel.hub import Hub, HubLimits

    (tmp_path / "root").mkdir()
    data = bytes(range(256)) * 64 * EXACT  # 17 chunks of 16 KiB
    (tmp_path / "root" / "f.bin").write_bytes(data)
    hub = Hub(tmp_path / "root", inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=16 * 1024))
    server = await rx.serve_tcp(hub.router)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    client = RSocketClient(single_transport_provider(TransportTCP(reader, writer)), metadata_encoding=COMPOSITE)
    async with client:
        sub = ExactSubscriber(EXACT)
        client.request_stream(PyPayload(b"", meta("files/f.bin"))).initial_request_n(EXACT).subscribe(sub)
        async with asyncio.timeout(10):
            how = await sub.done
    await server.close()
    assert b"".join(sub.items) == data and len(sub.items) == EXACT
    assert how == "next+complete", "a file's last chunk carries COMPLETE (one PAYLOAD with NEXT|COMPLETE)"


async def test_py_client_exact_demand_on_both_halves_of_a_channel(rsocket_py_client: Any) -> None:
    client, state = rsocket_py_client

    async def items() -> AsyncIterator[tuple[PyPayload, bool]]:
        for i in range(EXACT):
            yield PyPayload(f"q{i}".encode()), i == EXACT - 1

    sub = ExactSubscriber(EXACT)
    publisher = StreamFromAsyncGenerator(items)
    client.request_channel(PyPayload(b"", meta("exact")), publisher).initial_request_n(EXACT).subscribe(sub)
    async with asyncio.timeout(10):
        await sub.done
    assert sub.items == [f"r{i}".encode() for i in range(EXACT)]
    assert state["inbound"] == [f"q{i}".encode() for i in range(EXACT)]


async def test_py_client_cancel_stops_our_source(rsocket_py_client: Any) -> None:
    client, state = rsocket_py_client
    sub = CountingSubscriber(window=4, stop_after=10)
    client.request_stream(PyPayload(b"1000000", meta("count"))).initial_request_n(4).subscribe(sub)
    async with asyncio.timeout(10):
        await sub.done
        await state["closed"].wait()
    assert state["pulled"] <= 12 + 1, f"source pulled {state['pulled']} items for a window of 4"
    assert sub.violations == 0


async def test_py_client_request_channel(rsocket_py_client: Any) -> None:
    client, _ = rsocket_py_client

    async def words() -> AsyncIterator[tuple[PyPayload, bool]]:
        for i, w in enumerate([b"a", b"bb", b"ccc"]):
            yield PyPayload(w), i == 2

    sub = CountingSubscriber(window=2)
    publisher = StreamFromAsyncGenerator(words)
    client.request_channel(PyPayload(b"", meta("upper")), publisher).initial_request_n(2).subscribe(sub)
    async with asyncio.timeout(10):
        await sub.done
    assert sub.items == [b"A", b"BB", b"CCC"]


async def test_py_client_sees_our_application_error(rsocket_py_client: Any) -> None:
    client, _ = rsocket_py_client
    # rsocket-py surfaces APPLICATION_ERROR as RuntimeError(message)
    with pytest.raises(RuntimeError, match="nope, on purpose"):
        await client.request_response(PyPayload(b"", meta("fail")))


# ------------------------------------------------------------------ rxchannel client -> rsocket-py server


class PyServer:
    def __init__(self) -> None:
        self.router = RequestRouter()
        self.pulled = 0
        self.fnf: asyncio.Queue[bytes] = asyncio.Queue()
        self.cancelled = asyncio.Event()
        r = self.router

        @r.response("echo")
        async def echo(payload: PyPayload) -> Any:
            return create_future(PyPayload(payload.data[::-1]))

        @r.response("blob")
        async def blob(payload: PyPayload) -> Any:
            assert payload.data == BLOB
            return create_future(PyPayload(BLOB))

        @r.response("fail")
        async def fail(payload: PyPayload) -> Any:
            raise RuntimeError("python server refused")

        @r.fire_and_forget("fnf")
        async def fnf(payload: PyPayload) -> None:
            self.fnf.put_nowait(payload.data)

        @r.stream("count")
        async def count(payload: PyPayload) -> Any:
            total = int(payload.data)

            async def gen() -> AsyncIterator[tuple[PyPayload, bool]]:
                for i in range(total):
                    self.pulled += 1
                    yield PyPayload(str(i).encode()), i == total - 1

            return StreamFromAsyncGenerator(gen, on_cancel=lambda: self.cancelled.set())

        @r.channel("upper")
        async def upper(payload: PyPayload) -> Any:
            queue: asyncio.Queue[tuple[PyPayload, bool]] = asyncio.Queue()

            class Collect(Subscriber):  # type: ignore[misc]
                def on_subscribe(self, subscription: Subscription) -> None:
                    self.subscription = subscription
                    subscription.request(10)

                def on_next(self, value: PyPayload, is_complete: bool = False) -> None:
                    queue.put_nowait((PyPayload(value.data.upper()), is_complete))

                def on_error(self, exception: Exception) -> None:
                    pass

                def on_complete(self) -> None:
                    queue.put_nowait((PyPayload(b"END"), True))

            async def gen() -> AsyncIterator[tuple[PyPayload, bool]]:
                while True:
                    item, last = await queue.get()
                    yield item, last
                    if last:
                        return

            return StreamFromAsyncGenerator(gen), Collect()

        @r.channel("exact")
        async def exact(payload: PyPayload) -> Any:
            """Requests exactly int(data) items once; after the requester's COMPLETE, replies their count."""
            n = int(payload.data)
            received: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            items: list[bytes] = []

            class Exact(Subscriber):  # type: ignore[misc]
                def on_subscribe(self, subscription: Subscription) -> None:
                    subscription.request(n)

                def on_next(self, value: PyPayload, is_complete: bool = False) -> None:
                    items.append(value.data)
                    if is_complete and not received.done():
                        received.set_result(len(items))

                def on_error(self, exception: Exception) -> None:
                    if not received.done():
                        received.set_exception(exception)

                def on_complete(self) -> None:
                    if not received.done():
                        received.set_result(len(items))

            async def reply() -> AsyncIterator[tuple[PyPayload, bool]]:
                yield PyPayload(str(await received).encode()), True

            return StreamFromAsyncGenerator(reply), Exact()

    async def start(self) -> int:
        def handler_factory() -> RoutingRequestHandler:
            return RoutingRequestHandler(self.router)

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            RSocketServer(TransportTCP(reader, writer), handler_factory=handler_factory, fragment_size_bytes=1024)

        self.server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.server.close()


@pytest.fixture
async def py_server() -> AsyncIterator[tuple[rx.Peer, PyServer]]:
    server = PyServer()
    port = await server.start()
    client = await rx.connect_tcp("127.0.0.1", port, config=ConnectionConfig(max_frame_size=4096))
    yield client, server
    await client.close()
    await server.close()


async def test_our_client_request_response_and_fragments_against_rsocket_py(py_server: Any) -> None:
    client, _ = py_server
    assert (await client.request_response("echo", b"abc")).data == b"cba"
    assert (await client.request_response("blob", BLOB)).data == BLOB


async def test_our_client_fire_and_forget_against_rsocket_py(py_server: Any) -> None:
    client, server = py_server
    await client.fire_and_forget("fnf", b"note")
    async with asyncio.timeout(5):
        assert await server.fnf.get() == b"note"


async def test_rsocket_py_server_never_sends_past_our_window(py_server: Any) -> None:
    """What rsocket-py pulled from its source stays within what we granted (+1 it may hold)."""
    client, server = py_server
    stream = client.request_stream("count", b"60", window=rx.Window(5, refill=2), auto_ack=False)
    got = []
    async for item in stream:
        got.append(item.data)
        demand = client.connection.demand(stream.stream_id)
        if demand is not None:
            assert server.pulled <= demand.granted_total + 1, (server.pulled, demand.granted_total)
            assert demand.granted_total <= len(got) + 5, "we never granted beyond our window"
        await asyncio.sleep(0.002)  # a slow consumer, so rsocket-py's source is held back by credit
        stream.ack()
    assert got == [str(i).encode() for i in range(60)]


@pytest.mark.parametrize("count", [EXACT, 1])
async def test_our_exact_demand_against_an_rsocket_py_stream(py_server: Any, count: int) -> None:
    client, _ = py_server
    stream = client.request_stream("count", str(count).encode(), window=rx.Manual(count))
    async with asyncio.timeout(10):
        got = [p.data async for p in stream]
    assert got == [str(i).encode() for i in range(count)]


async def test_our_channel_completes_to_an_rsocket_py_responder_that_grants_exactly_n(py_server: Any) -> None:
    """rsocket-py grants exactly EXACT for our EXACT items: our COMPLETE must follow without more credit."""
    client, _ = py_server
    outbound = [f"q{i}".encode() for i in range(EXACT)]
    stream = client.request_channel("exact", outbound, str(EXACT).encode(), window=rx.Manual(1))
    async with asyncio.timeout(10):
        (reply,) = [p.data async for p in stream]
    assert reply == str(EXACT).encode()


async def test_our_cancel_reaches_the_rsocket_py_stream(py_server: Any) -> None:
    client, server = py_server
    async for item in client.request_stream("count", b"1000000", window=4):
        if item.data == b"5":
            break
    async with asyncio.timeout(5):
        await server.cancelled.wait()
    assert server.pulled < 100


async def test_our_client_request_channel_against_rsocket_py(py_server: Any) -> None:
    client, _ = py_server
    got = [p.data async for p in client.request_channel("upper", [b"x", b"yy"], b"", window=4)]
    assert got == [b"X", b"YY", b"END"]


async def test_rsocket_py_error_reaches_us_as_a_remote_error(py_server: Any) -> None:
    client, _ = py_server
    with pytest.raises(rx.RemoteError) as info:
        await client.request_response("fail")
    assert info.value.code == rx.ErrorCode.APPLICATION_ERROR and "python server refused" in info.value.message
