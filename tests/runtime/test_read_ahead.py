"""A handler's generator is pulled at most one item past the requester's demand, as
``Router.stream`` documents (issue 32, item 7): with ``Manual(3)`` a generator runs 4 steps,
the 4th item waits for credit and is not lost; a last item marked ``last=True`` ends the
stream without a pull past it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import rxchannel as rxc


@contextlib.asynccontextmanager
async def _serving(route: str, handler: Any) -> AsyncIterator[rxc.Peer]:
    """A peer connected over TCP to a server whose stream ``route`` is ``handler``; both closed after."""
    router = rxc.Router()
    router.stream(route)(handler)
    server = await rxc.serve(router, transport="tcp")
    try:
        peer = await rxc.connect(server.url)
        try:
            yield peer
        finally:
            await peer.close()
    finally:
        await server.close()


async def test_manual_3_runs_a_generator_4_steps_and_the_4th_item_waits_for_credit() -> None:
    pulled: list[int] = []

    async def count(request: rxc.Request):  # type: ignore[no-untyped-def]
        for i in range(10):
            pulled.append(i)
            yield str(i).encode()

    async with _serving("count", count) as peer:
        stream = peer.request_stream("count", window=rxc.Manual(3))
        got = [int((await stream.next()).data) for _ in range(3)]
        await asyncio.sleep(0.2)  # time for the producer to run ahead, if it would
        assert got == [0, 1, 2] and pulled == [0, 1, 2, 3], "one item past the demand, held for credit"
        stream.request(1)
        assert int((await stream.next()).data) == 3, "the held item is sent once credit comes, not dropped"
        await stream.aclose()


async def test_a_last_item_marked_as_last_is_never_pulled_past() -> None:
    pulled: list[int] = []

    async def three(request: rxc.Request):  # type: ignore[no-untyped-def]
        for i in range(3):
            pulled.append(i)
            yield rxc.Payload(str(i).encode(), last=i == 2)
        pulled.append(99)  # never reached: the stream ended with the last item

    async with _serving("three", three) as peer:
        items = [int(item.data) async for item in peer.request_stream("three", window=rxc.Manual(3))]
        await asyncio.sleep(0.1)
        assert items == [0, 1, 2] and pulled == [0, 1, 2]
