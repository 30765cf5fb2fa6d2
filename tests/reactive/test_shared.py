"""Fan-out operators (issue 18): ``share_demand`` (broadcast, read once, paced by the slowest
within ``max_lag``, laggards detached) and ``balance`` (each item to one subscriber, by demand).

In virtual time (``tests.support.run_in_virtual_time``): the patience of a broadcast is a
duration, so its timing is exact and no test sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from reactivex.subject import Subject

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.fanout import JOINED_LATE, LAGGED, JoinedLateError, LaggedError
from rxchannel.operators import balance, request_n, share_demand, windowed
from tests.support import run_in_virtual_time, settle


class Sub:
    """An observer recording items, with the time each came, and its terminal signal."""

    def __init__(self, name: str, others: list[Sub] | None = None, check: Any = None) -> None:
        self.name = name
        self.items: list[int] = []
        self.error: BaseException | None = None
        self.completed = False
        self.check = check
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def over(self) -> bool:
        return self.done.done()

    def on_next(self, item: int) -> None:
        assert not self.over, "an item after the terminal signal"
        self.items.append(item)
        if self.check is not None:
            self.check(self)

    def on_error(self, error: BaseException) -> None:
        self.error = error
        self.done.set_result(None)

    def on_completed(self) -> None:
        self.completed = True
        self.done.set_result(None)


def counting(n: int, pulled: list[int]) -> Iterator[int]:
    for i in range(n):
        pulled.append(i)
        yield i


def test_a_broadcast_to_four_with_one_slow_reads_once_paces_the_fast_and_detaches_the_laggard() -> None:
    count, max_lag, patience, tick = 60, 4, 0.5, 0.1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pulled: list[int] = []
        shared = rxc.from_iterable(counting(count, pulled)).pipe(share_demand(max_lag, patience=patience))
        slow = Sub("slow")
        gaps: list[int] = []

        def within_lag(fast: Sub) -> None:
            if not slow.over:  # while the slow one is attached, nobody is more than the window ahead of it
                gaps.append(len(fast.items) - len(slow.items))

        fast = [Sub(f"fast{i}", check=within_lag) for i in range(3)]
        acks: Subject[int] = Subject()
        for sub in fast:
            shared.pipe(windowed(2)).subscribe(sub)
        shared.pipe(windowed(2, acks=acks)).subscribe(slow)  # an async sink: it acknowledges one item per tick
        start = loop.time()
        acked = 0
        async with asyncio.timeout(30):
            while not slow.over:
                await asyncio.sleep(tick)
                if acked < len(slow.items):
                    acks.on_next(1)
                    acked += 1
            detached_at = loop.time() - start
            await asyncio.gather(*(sub.done for sub in fast))

        assert pulled == list(range(count)), "every item is read from the source exactly once"
        for sub in fast:
            assert sub.completed and sub.items == list(range(count))
        # paced: while the slow one was attached, the fast ones stayed within max_lag of it
        # (+1: its pull stream holds one item beyond what it delivered, to find the end)
        assert gaps and max(gaps) <= max_lag + 1
        assert max(gaps) >= max_lag, "the fast ones did reach the edge of the window"
        # ... and were held there: at the detachment they had far fewer than all the items
        assert len(gaps) < count
        # the laggard's declared outcome: LaggedError, once it had held the others back for `patience`
        assert isinstance(slow.error, LaggedError) and slow.error.code == LAGGED
        assert slow.items == list(range(len(slow.items))) and slow.error.position >= len(slow.items)
        assert "detached" in str(slow.error) and f"window is {max_lag}" in str(slow.error)
        assert patience <= detached_at <= patience + 3 * tick

    run_in_virtual_time(main)


def test_a_subscriber_keeping_up_is_never_detached_and_the_source_is_read_once() -> None:
    async def main() -> None:
        pulled: list[int] = []
        shared = rxc.from_iterable(counting(200, pulled)).pipe(share_demand(8, patience=0.0))
        subs = [Sub(f"s{i}") for i in range(4)]
        for i, sub in enumerate(subs):
            shared.pipe(windowed(1 + 2 * i)).subscribe(sub)
        async with asyncio.timeout(10):
            await asyncio.gather(*(sub.done for sub in subs))
        assert pulled == list(range(200))
        assert all(sub.completed and sub.items == list(range(200)) for sub in subs)

    run_in_virtual_time(main)


def test_a_late_subscriber_gets_joined_late_and_a_join_window_lets_it_in() -> None:
    async def main() -> None:
        shared = rxc.from_iterable(range(50)).pipe(share_demand(4))
        first = Sub("first")
        demand: Subject[int] = Subject()
        shared.pipe(request_n(demand)).subscribe(first)
        await settle()
        demand.on_next(10)
        await settle()
        assert first.items == list(range(10))
        late = Sub("late")
        shared.subscribe(late)  # the first items are gone: it would miss them
        demand.on_next(40)
        await asyncio.wait_for(first.done, 5)
        await asyncio.wait_for(late.done, 5)
        assert first.items == list(range(50))
        assert isinstance(late.error, JoinedLateError) and late.error.code == JOINED_LATE and late.items == []

        # once everyone has gone, the next subscriber starts a new broadcast (the source is read again)
        again = Sub("again")
        shared.subscribe(again)
        await asyncio.wait_for(again.done, 5)
        assert again.completed and again.items == list(range(50))

        # with a join window, the first waits at the window's edge and a second one joins in time
        windowed_share = rxc.from_iterable(range(50)).pipe(share_demand(4, join_window=1.0))
        a, b = Sub("a"), Sub("b")
        windowed_share.subscribe(a)
        await asyncio.sleep(0.5)
        assert len(a.items) <= 4 + 1, "the first item is kept for the join window: the first waits"
        windowed_share.subscribe(b)
        await asyncio.wait_for(asyncio.gather(a.done, b.done), 5)
        assert a.items == b.items == list(range(50))

    run_in_virtual_time(main)


def test_share_demand_checks_its_arguments_and_its_source() -> None:
    for bad in ({"max_lag": 0}, {"max_lag": 2, "patience": float("inf")}, {"max_lag": 2, "join_window": -1}):
        with pytest.raises(ValueError):
            share_demand(**bad)
    with pytest.raises(ValueError, match="stall the others forever"):
        share_demand(4, patience=float("nan"))
    with pytest.raises(TypeError, match="share_demand"):
        Subject().pipe(share_demand(4))  # a hot Observable has no demand to share
    with pytest.raises(TypeError, match="balance"):
        Subject().pipe(balance())


def test_a_source_error_reaches_every_subscriber_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield from range(5)
        raise ValueError("disk on fire")

    async def main() -> None:
        shared = rxc.from_iterable(failing()).pipe(share_demand(8))
        subs = [Sub(f"s{i}") for i in range(3)]
        for sub in subs:
            shared.subscribe(sub)
        await asyncio.wait_for(asyncio.gather(*(sub.done for sub in subs)), 5)
        for sub in subs:
            assert sub.items == list(range(5)) and isinstance(sub.error, ValueError)

    run_in_virtual_time(main)


def test_balance_gives_each_item_to_exactly_one_subscriber_by_demand() -> None:
    async def main() -> None:
        pulled: list[int] = []
        shared = rxc.from_iterable(counting(300, pulled)).pipe(balance())
        slow_acks: Subject[int] = Subject()
        slow, fast = Sub("slow"), Sub("fast")

        def source_within_demand(sub: Sub) -> None:
            taken = len(slow.items) + len(fast.items)
            # one item read ahead by the balancer, one held by the source's own pull stream
            assert len(pulled) <= taken + 2, "the shared source read ahead of the members' demand"

        slow.check = fast.check = source_within_demand
        shared.pipe(windowed(2, acks=slow_acks)).subscribe(slow)
        shared.pipe(windowed(4)).subscribe(fast)
        acked = 0
        async with asyncio.timeout(60):
            while not (slow.over and fast.over):
                await asyncio.sleep(0.05)  # the slow one acknowledges one item per tick
                if acked < len(slow.items):
                    slow_acks.on_next(1)
                    acked += 1
        assert slow.completed and fast.completed
        assert sorted(slow.items + fast.items) == list(range(300)), "each item to exactly one subscriber"
        assert len(fast.items) > 5 * len(slow.items), "work goes where the demand is"
        assert pulled == list(range(300))

    run_in_virtual_time(main)


def test_balance_skips_a_subscriber_with_no_demand_and_loses_nothing_when_one_leaves() -> None:
    async def main() -> None:
        shared = rxc.from_iterable(range(100)).pipe(balance())
        idle_demand: Subject[int] = Subject()
        idle, busy = Sub("idle"), Sub("busy")
        idle_subscription = shared.pipe(request_n(idle_demand)).subscribe(idle)
        idle_demand.on_next(3)
        await settle()
        shared.pipe(windowed(2)).subscribe(busy)
        await settle()
        idle_subscription.dispose()  # it had asked for 3 and got them: nothing else was its
        await asyncio.wait_for(busy.done, 5)
        assert len(idle.items) == 3
        assert sorted(idle.items + busy.items) == list(range(100))

    run_in_virtual_time(main)


async def test_share_demand_over_a_remote_stream_reads_the_remote_once(tmp_path: Any) -> None:
    router = rx.Router()
    pulled: list[int] = []

    @router.stream("numbers")
    async def numbers(request: rx.Request) -> Any:
        for i in range(100):
            pulled.append(i)
            yield str(i).encode()

    server = await rx.serve_tcp(router)
    peer = await rx.connect_tcp("127.0.0.1", server.port)
    try:
        shared = rxc.request_stream(peer, "numbers").pipe(windowed(8), share_demand(16))
        subs = [Sub(f"s{i}") for i in range(4)]
        for sub in subs:
            shared.pipe(windowed(3)).subscribe(sub)
        await asyncio.wait_for(asyncio.gather(*(sub.done for sub in subs)), 20)
        assert pulled == list(range(100)), "one remote stream for four subscribers"
        assert all([int(p.data) for p in sub.items] == list(range(100)) for sub in subs)  # type: ignore[attr-defined]
    finally:
        await peer.close()
        await server.close()


def test_balance_takes_turns_among_subscribers_that_are_always_ready() -> None:
    async def main() -> None:
        shared = rxc.from_iterable(range(100)).pipe(balance())
        subs = [Sub(f"s{i}") for i in range(3)]
        for i, sub in enumerate(subs):
            shared.pipe(windowed(1 + i)).subscribe(sub)
        await asyncio.wait_for(asyncio.gather(*(sub.done for sub in subs)), 5)
        counts = [len(sub.items) for sub in subs]
        assert sorted(item for sub in subs for item in sub.items) == list(range(100))
        assert max(counts) - min(counts) <= 1, counts  # the one that waited longest goes first

    run_in_virtual_time(main)
