"""A JetStream sink with demand (issue 28): at most ``window`` publishes not stored by the server,
so a full stream (max_bytes, discard new) slows the file source feeding it."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from nats.aio.client import Client

from rxchannel import reactive as rxc
from rxchannel.core import LocalProtocolError, parse_request_metadata
from rxchannel.files import FileSource
from rxchannel.nats import Message, jetstream_sink, jetstream_source
from rxchannel.operators import request_n
from tests.nats.helpers import make_consumer, make_stream
from tests.support import make_file

CHUNK = 16 * 1024


async def test_a_jetstream_sink_into_a_full_stream_slows_its_file_source(nc: Client, tmp_path: Path) -> None:
    """Acceptance (issue 28): the file's read offset never passes what JetStream stored + the
    window + 1 chunk, while a slow reader drains a stream that holds 6 chunks."""
    content = make_file(tmp_path / "f.bin", 80 * CHUNK, seed=3)
    await make_stream(nc, "FULL", ["full.>"], max_bytes=6 * CHUNK + 2048)
    await make_consumer(nc, "FULL", "reader")
    window = 4
    source = FileSource(tmp_path / "f.bin", chunk_size=CHUNK)
    sink = jetstream_sink(nc, "full.f", window=window, ordered=True, end_marker=True)
    checks: list[tuple[int, int]] = []

    def check() -> None:
        checks.append((source.read_offset, sink.publisher.stored))

    sink.publisher.on_stored(lambda _n: check())
    rxc.from_async_iterable(lambda: source).pipe(request_n(sink.demand)).subscribe(sink)

    received: list[Message] = []
    async for message in jetstream_source(nc, "FULL", consumer="reader", window=2):
        received.append(message)
        check()
        await asyncio.sleep(0.004)  # a slow reader: the stream fills up behind it
    published = await asyncio.wait_for(sink.done, 10)

    assert b"".join(m.data for m in received) == content  # in order across the refusals
    _, first = parse_request_metadata(received[0].metadata)
    _, last = parse_request_metadata(received[-1].metadata)
    assert first["size"] == len(content) and last["sha256"] == hashlib.sha256(content).hexdigest()
    assert published.messages == 80
    assert sink.publisher.refused > 0  # the stream was full: that is what slowed the source
    assert len(checks) > 100
    for read, stored in checks:
        assert read <= (stored + window + 1) * CHUNK, (read, stored)


async def test_a_jetstream_sink_refuses_items_past_its_demand(nc: Client) -> None:
    await make_stream(nc, "D", ["d.>"])
    sink = jetstream_sink(nc, "d.x", window=2)
    granted: list[int] = []
    sink.demand.subscribe(granted.append)
    await asyncio.sleep(0.1)
    assert granted == [2]
    sink.on_next(b"1")
    sink.on_next(b"2")
    with pytest.raises(LocalProtocolError):
        sink.on_next(b"3")  # nothing is buffered past the demand: the sink fails
    with pytest.raises(LocalProtocolError):
        await asyncio.wait_for(sink.done, 5)
