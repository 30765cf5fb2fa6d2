"""Terminal signals need no credit (Protocol.md "Reactive Streams Semantics"; Reactive Streams
§1.5: a finite publisher signals completion, §2.9: onComplete needs no demand).

A requester that grants exactly as many items as a stream has gets those items and the
end of the stream, and never has to grant more. Checked for request-stream and both
halves of request-channel, rxchannel on both sides over every transport; the frames each
side wrote are decoded to prove that no extra credit was granted. rsocket-py as the other
side is in ``test_interop_rsocket_py.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.core._frames import PayloadFrame, RequestFrame
from rxchannel.files import FileSource, fetch_file
from rxchannel.hub import Hub, HubLimits
from tests.support import ConnectPeers, Counter, FrameTap, make_file

N = 17


async def collect(stream: rx.RemoteStream, timeout: float = 10) -> list[rx.Payload]:
    async with asyncio.timeout(timeout):  # a missing COMPLETE fails here, never hangs
        return [item async for item in stream]


@pytest.mark.parametrize("count", [N, 1, 0])
async def test_exact_demand_on_a_request_stream_gets_every_item_and_complete(
    connect_peers: ConnectPeers, count: int
) -> None:
    router = rx.Router()
    router.stream("n")(Counter())
    client, server = await connect_peers(router)
    tap = FrameTap(client)
    demand = max(count, 1)  # a request carries at least 1
    stream = client.request_stream("n", str(count).encode(), window=rx.Manual(demand))
    got = await collect(stream)
    assert [p.data for p in got] == [str(i).encode() for i in range(count)]
    (request,) = [f for f in tap.decoded(stream.stream_id) if isinstance(f, RequestFrame)]
    assert request.initial_n == demand and tap.request_n(stream.stream_id) == []


async def test_stop_and_wait_granting_one_at_a_time_ends_without_an_extra_grant(connect_peers: ConnectPeers) -> None:
    router = rx.Router()
    router.stream("n")(Counter())
    client, server = await connect_peers(router)
    tap = FrameTap(client)
    stream = client.request_stream("n", str(N).encode(), window=rx.Manual(1))
    got = []
    async with asyncio.timeout(10):
        while True:
            try:
                got.append(await stream.next())
            except StopAsyncIteration:
                break
            if len(got) < N:
                stream.request(1)  # nothing is granted after the last item
    assert len(got) == N
    assert tap.request_n(stream.stream_id) == [1] * (N - 1)


async def test_exact_demand_on_both_halves_of_a_channel(connect_peers: ConnectPeers) -> None:
    inbound_items: list[bytes] = []
    router = rx.Router()

    @router.channel("exact", window=rx.Manual(N))
    async def exact(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async with asyncio.timeout(10):  # the requester's COMPLETE must arrive without more credit
            async for item in request.inbound:
                inbound_items.append(item.data)
        for i in range(5):
            yield f"r{i}".encode()

    client, server = await connect_peers(router)
    client_tap, server_tap = FrameTap(client), FrameTap(server)
    outbound = [f"q{i}".encode() for i in range(N)]
    stream = client.request_channel("exact", outbound, window=rx.Manual(5))
    got = await collect(stream)
    assert [p.data for p in got] == [f"r{i}".encode() for i in range(5)]
    assert inbound_items == outbound
    # each side granted exactly the other side's item count, once
    assert client_tap.request_n(stream.stream_id) == []
    assert server_tap.request_n(stream.stream_id) == [N]


async def test_a_file_stream_with_exact_demand_ends_with_next_and_complete_in_one_frame(
    connect_peers: ConnectPeers, tmp_path: Path
) -> None:
    chunk = 1024
    data = make_file(tmp_path / "root" / "f.bin", N * chunk - 100)
    hub = Hub(tmp_path / "root", inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=chunk))
    client, server = await connect_peers(hub.router)
    server_tap = FrameTap(server)
    stream = client.request_stream("files/f.bin", window=rx.Manual(N))
    got = await collect(stream)
    assert b"".join(p.data for p in got) == data and len(got) == N
    payloads = [f for f in server_tap.decoded(stream.stream_id) if isinstance(f, PayloadFrame)]
    assert len(payloads) == N, "the file's end travels with its last chunk, not as a frame of its own"
    assert payloads[-1].next and payloads[-1].complete
    # and the hub never read past what was granted: a file source knows its last chunk
    result = await fetch_file(client, "f.bin", tmp_path / "out.bin", window=rx.Manual(N))
    assert result.size == len(data) and (tmp_path / "out.bin").read_bytes() == data


async def test_the_hubs_push_receipt_needs_exactly_one_credit(connect_peers: ConnectPeers, tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    hub = Hub(tmp_path / "root", inbox=tmp_path / "inbox")
    client, server = await connect_peers(hub.router)
    server_tap = FrameTap(server)
    make_file(tmp_path / "r.bin", 3000)
    chunks = FileSource(tmp_path / "r.bin", chunk_size=1000)
    stream = client.request_channel("push/r.bin", chunks, info={"size": 3000}, window=rx.Manual(1))
    (receipt,) = await collect(stream)
    assert json.loads(receipt.data)["size"] == 3000
    (payload,) = [f for f in server_tap.decoded(stream.stream_id) if isinstance(f, PayloadFrame)]
    assert payload.next and payload.complete  # the receipt is one PAYLOAD with NEXT|COMPLETE
