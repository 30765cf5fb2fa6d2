"""A WebSocket closed while its read loop waits still ends with the closing handshake.

aiohttp marks a connection abnormal when a pending ``receive()`` is cancelled, and its
``close()`` then drops TCP without waiting for the peer's CLOSE: the peer may lose the last
frames sent (a CANCEL, the ERROR that ends a resumable session), which is how a hub kept a
``fetch -o - | head`` stream open until its session expired. The transport keeps aiohttp's
receive running across a cancelled read, so the close is orderly.
"""

from __future__ import annotations

import asyncio

import pytest

from rxchannel.transports import EndOfStream
from tests.support import TRANSPORTS


async def test_a_close_after_a_cancelled_read_is_an_orderly_close_with_the_last_frames() -> None:
    client, server = await TRANSPORTS["websocket"](None)
    reading = asyncio.ensure_future(client.receive())  # the read loop, waiting
    await asyncio.sleep(0.05)
    reading.cancel()  # the peer closes: its read loop is cancelled first (Peer.close)
    with pytest.raises(asyncio.CancelledError):
        await reading
    client.write([b"cancel", b"the last error"])
    closing = asyncio.ensure_future(client.close())
    got: list[bytes] = []
    with pytest.raises(EndOfStream):  # 1000, not 1006: the handshake completed
        async with asyncio.timeout(5):
            while True:
                got += await server.receive()
    assert got == [b"cancel", b"the last error"]
    await closing
    assert client._ws.close_code == 1000  # the server's CLOSE came back: not dropped as abnormal (1006)
    await server.close()


async def test_a_read_cancelled_and_taken_up_again_loses_nothing() -> None:
    client, server = await TRANSPORTS["websocket"](None)
    first = asyncio.ensure_future(server.receive())
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    client.write([b"one", b"two"])
    got: list[bytes] = []
    async with asyncio.timeout(5):
        while len(got) < 2:
            got += await server.receive()
    assert got == [b"one", b"two"]
    await client.close()
    await server.close()
