"""The async-iteration twin of ``share_demand`` (issue 18): one source, several loops, read once.

Virtual time: a loop's pace and the broadcast's patience are durations, exact here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rxchannel import aio
from rxchannel.fanout import Broadcast, JoinedLateError, LaggedError
from tests.support import run_in_virtual_time, settle


class Numbers:
    """An async source that records every pull and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.pulled = 0
        self.closed = False

    async def _gen(self) -> AsyncIterator[int]:
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise OSError("the disk failed")
                self.pulled += 1
                yield i
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[int]:
        return self._gen()


async def consume(
    shared: Broadcast[int], pace: float, got: list[int], watch: list[tuple[int, int]] | None = None
) -> BaseException | None:
    try:
        async for item in shared.subscribe():
            got.append(item)
            if watch is not None:
                watch.append((shared.pulled, shared.buffered))
            await asyncio.sleep(pace)
    except Exception as exc:
        return exc
    return None


def test_four_loops_one_slow_read_once_keep_the_window_and_the_slow_one_is_detached() -> None:
    async def main() -> None:
        source = Numbers(100)
        shared = aio.share_demand(source, max_lag=5, patience=1.0)
        got: list[list[int]] = [[] for _ in range(4)]
        watch: list[tuple[int, int]] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await asyncio.wait_for(
            asyncio.gather(
                consume(shared, 0.01, got[0], watch),
                consume(shared, 0.01, got[1]),
                consume(shared, 0.02, got[2]),
                consume(shared, 0.5, got[3]),  # the slow one
            ),
            60,
        )
        assert source.pulled == 100 and source.closed, "read once, closed when the last loop left"
        assert results[:3] == [None, None, None] and got[0] == got[1] == got[2] == list(range(100))
        slow = results[3]
        assert isinstance(slow, LaggedError) and got[3] == list(range(len(got[3])))
        assert slow.position == len(got[3]) and slow.behind == 5
        assert all(buffered <= 5 for _, buffered in watch), "never more than max_lag items kept"
        # while the slow one was attached the fast ones waited for it (one item per half second)
        assert 2 <= len(got[3]) <= 4
        assert loop.time() - start >= 1.0

    run_in_virtual_time(main)


def test_a_source_error_and_a_late_loop() -> None:
    async def main() -> None:
        source = Numbers(10, fail_at=6)
        shared = aio.share_demand(source, max_lag=3)
        first: list[int] = []
        task = asyncio.ensure_future(consume(shared, 0.1, first))
        await asyncio.sleep(0.25)
        with pytest.raises(JoinedLateError, match="moved past"):
            shared.subscribe()
        error = await task
        assert first == list(range(6)) and isinstance(error, OSError)
        assert source.closed and shared.closed
        with pytest.raises(JoinedLateError, match="is over"):
            shared.subscribe()

    run_in_virtual_time(main)


def test_leaving_early_detaches_only_that_loop_and_the_last_one_out_closes_the_source() -> None:
    async def main() -> None:
        source = Numbers(1000)
        shared = aio.share_demand(source, max_lag=4)
        a, b = shared.subscribe(), shared.subscribe()
        assert [await a.next() for _ in range(3)] == [0, 1, 2]
        await a.aclose()  # a leaves: it no longer holds b back
        assert [await b.next() for _ in range(20)] == list(range(20))
        assert shared.pulled <= 20 + 1 and not source.closed
        await b.aclose()
        await settle()
        assert source.closed and shared.closed and shared.buffered == 0

    run_in_virtual_time(main)


def test_an_iterator_closed_or_dropped_before_its_first_item_leaves_the_broadcast() -> None:
    async def main() -> None:
        source = Numbers(100)
        shared = aio.share_demand(source, max_lag=2, patience=60.0)
        a, b, c = shared.subscribe(), shared.subscribe(), shared.subscribe()
        iterator = b.__aiter__()
        await iterator.aclose()  # as a producer does when its stream is cancelled before any credit
        async for _ in c:
            break  # a loop left at once: its iterator is dropped
        await settle()
        assert shared.subscribers == 1, "only a is left: nobody else holds it back"
        assert [await a.next() for _ in range(50)] == list(range(50))  # never waits out the patience
        a.close()  # from synchronous code: the last one out closes the source in the background
        await settle()
        assert shared.closed and source.closed

    run_in_virtual_time(main)
