"""A handler's generator is pulled at most one item past the requester's demand, as
``Router.stream`` documents (issue 32, item 7): with ``Manual(3)`` a generator runs 4 steps,
the 4th item waits for credit and is not lost; a last item marked ``last=True`` ends the
stream without a pull past it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import rxchannel as rxc


class _Numbers:
    """A stream handler of the numbers below ``count`` (the last one marked ``last=True`` if
    ``mark_last``) that records each number the runtime pulls; a pull past the last records ``count``."""

    def __init__(self, count: int, *, mark_last: bool = False):
        self.count, self.mark_last = count, mark_last
        self.pulled: list[int] = []

    async def __call__(self, request: rxc.Request) -> AsyncIterator[bytes | rxc.Payload]:
        for i in range(self.count):
            self.pulled.append(i)
            data = str(i).encode()
            yield rxc.Payload(data, last=True) if self.mark_last and i == self.count - 1 else data
        self.pulled.append(self.count)


@contextlib.asynccontextmanager
async def _serving(numbers: _Numbers) -> AsyncIterator[rxc.Peer]:
    """A peer connected over TCP to a server whose stream ``numbers`` is ``numbers``; both closed after."""
    router = rxc.Router()
    router.stream("numbers")(numbers)
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
    numbers = _Numbers(10)
    async with _serving(numbers) as peer:
        stream = peer.request_stream("numbers", window=rxc.Manual(3))
        got = [int((await stream.next()).data) for _ in range(3)]
        await asyncio.sleep(0.2)  # time for the producer to run ahead, if it would
        assert got == [0, 1, 2] and numbers.pulled == [0, 1, 2, 3], "one item past the demand, held for credit"
        stream.request(1)
        assert int((await stream.next()).data) == 3, "the held item is sent once credit comes, not dropped"
        await stream.aclose()


async def test_a_last_item_marked_as_last_is_never_pulled_past() -> None:
    numbers = _Numbers(3, mark_last=True)
    async with _serving(numbers) as peer:
        items = [int(item.data) async for item in peer.request_stream("numbers", window=rxc.Manual(3))]
        await asyncio.sleep(0.1)
        assert items == [0, 1, 2] and numbers.pulled == [0, 1, 2], "the stream ended with the item marked last"
