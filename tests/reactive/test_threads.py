"""The Rx facade from other threads (issue 14): values emitted on any thread are carried onto
the event loop; each one is delivered or dropped by the declared policy (and counted),
never lost silently. Demand survives a change of scheduler; local pipelines run without
an event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import NewThreadScheduler, ThreadPoolScheduler
from reactivex.subject import Subject

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.operators import (
    observe_on,
    on_backpressure_buffer,
    on_backpressure_latest,
    request_n,
    windowed,
)
from rxchannel.runtime import Peer

THREADS, EACH = 4, 1500


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Peer, Peer]]:
    """A TCP pair whose server echoes a channel's items back, slowly (it yields between items)."""
    router = rx.Router()

    @router.channel("echo", window=4)
    async def echo_handler(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async for item in request.inbound:
            await asyncio.sleep(0)
            yield item.data

    server = await rx.serve_tcp(router)
    client = await rx.connect_tcp("127.0.0.1", server.port)
    yield client, server
    await client.close()
    await server.close()


def emit_from_threads(subject: Subject[int], *, complete: bool = True) -> threading.Thread:
    """Start THREADS threads emitting EACH distinct values each into ``subject`` at once."""
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()  # Rx grammar: calls into one observer are serialized

    def run(base: int) -> None:
        barrier.wait()
        for i in range(EACH):
            with lock:
                subject.on_next(base + i)

    def all_threads() -> None:
        workers = [threading.Thread(target=run, args=(t * EACH,)) for t in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if complete:
            subject.on_completed()

    starter = threading.Thread(target=all_threads)
    starter.start()
    return starter


class Dropped:
    """A thread-safe list of what a backpressure operator dropped."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)


async def consume_slowly(source: reactivex.Observable[Any]) -> list[Any]:
    out = []
    async for item in rxc.to_async_iterable(source):
        out.append(item)
        await asyncio.sleep(0)  # slower than four threads
    return out


def accounted(received: list[Any], dropped: list[Any]) -> None:
    assert len(received) == len(set(received)), "an item was delivered twice"
    assert set(received).isdisjoint(dropped)
    assert sorted([*received, *dropped]) == list(range(THREADS * EACH)), "every value delivered or dropped"


@pytest.mark.parametrize("policy", ["buffer", "latest"])
async def test_four_threads_into_a_backpressure_buffer_every_value_accounted_for(policy: str) -> None:
    dropped = Dropped()
    subject: Subject[int] = Subject()
    operator = (
        on_backpressure_buffer(16, "drop_oldest", on_drop=dropped)
        if policy == "buffer"
        else on_backpressure_latest(on_drop=dropped)
    )
    source = subject.pipe(operator, windowed(4))
    consumer = asyncio.ensure_future(consume_slowly(source))
    await asyncio.sleep(0)  # subscribed before the threads start
    starter = emit_from_threads(subject)
    received = await asyncio.wait_for(consumer, 60)
    starter.join()
    accounted(received, dropped.items)
    assert received, "some values were delivered"
    # a thread-fed stream has no order across threads, but each thread's values keep theirs
    for t in range(THREADS):
        mine = [v for v in received if t * EACH <= v < (t + 1) * EACH]
        assert mine == sorted(mine)


async def test_a_thread_emitting_while_the_loop_is_idle_wakes_it() -> None:
    """The loop sleeps in select() with nothing else to do: a value from a thread must wake it
    (before, it waited for some unrelated event: a 20 s stall)."""
    subject: Subject[int] = Subject()
    consumer = asyncio.ensure_future(_take(subject.pipe(on_backpressure_buffer(4, "error"), windowed(1)), 20))

    def slow() -> None:
        for i in range(20):
            threading.Event().wait(0.005)
            subject.on_next(i)

    await asyncio.sleep(0)
    thread = threading.Thread(target=slow)
    thread.start()
    assert await asyncio.wait_for(consumer, 20) == list(range(20))
    thread.join()


async def _take(source: reactivex.Observable[int], n: int) -> list[int]:
    out = []
    async for item in rxc.to_async_iterable(source):
        out.append(item)
        if len(out) == n:
            break
    return out


async def test_four_threads_into_a_buffer_that_overflows_with_error_fail_loudly() -> None:
    subject: Subject[int] = Subject()
    source = subject.pipe(on_backpressure_buffer(8, "error"), windowed(1))
    consumer = asyncio.ensure_future(consume_slowly(source))
    await asyncio.sleep(0)
    starter = emit_from_threads(subject)
    with pytest.raises(rxc.BufferOverflowError, match="overflowed its buffer of 8"):
        await asyncio.wait_for(consumer, 60)
    starter.join()


async def test_four_threads_into_a_remote_channel_every_value_accounted_for(echo: tuple[Peer, Peer]) -> None:
    client, _ = echo
    dropped = Dropped()
    subject: Subject[int] = Subject()
    outgoing = subject.pipe(on_backpressure_buffer(32, "drop_oldest", on_drop=dropped))
    replies = rxc.request_channel(client, "echo", _encoded(outgoing)).pipe(windowed(8))
    consumer = asyncio.ensure_future(consume_slowly(replies))
    await asyncio.sleep(0.05)  # the channel is open and pulling before the threads start
    starter = emit_from_threads(subject)
    received = [int(p.data) for p in await asyncio.wait_for(consumer, 60)]
    starter.join()
    accounted(received, dropped.items)


async def _encoded(source: reactivex.Observable[int]) -> AsyncIterator[bytes]:
    async for value in rxc.to_async_iterable(source):
        yield str(value).encode()


async def test_an_interval_on_a_thread_scheduler_into_latest_then_a_channel(echo: tuple[Peer, Peer]) -> None:
    """The reported case: reactivex.interval on its own thread → on_backpressure_latest → request_channel."""
    client, _ = echo
    dropped = Dropped()
    readings = reactivex.interval(0.0005, scheduler=NewThreadScheduler()).pipe(
        ops.take(300), on_backpressure_latest(on_drop=dropped)
    )
    replies = rxc.request_channel(client, "echo", _encoded(readings)).pipe(windowed(8))
    received = [int(p.data) for p in await asyncio.wait_for(consume_slowly(replies), 60)]
    assert sorted(received + dropped.items) == list(range(300))
    assert received[-1] == 299, "the last reading is delivered (latest keeps it), not stuck"


async def test_an_observer_sink_fed_from_a_thread_sends_in_order_within_credit(echo: tuple[Peer, Peer]) -> None:
    client, _ = echo
    chan = rxc.channel(client, "echo", window=16)
    replies = asyncio.ensure_future(consume_slowly(chan.inbound))
    # the remote's demand, granted on the loop, drives a source that emits on another thread
    source = reactivex.from_iterable(range(500)).pipe(ops.map(lambda v: str(v).encode()))
    source.pipe(_request_on_thread(chan.demand)).subscribe(chan)
    received = [int(p.data) for p in await asyncio.wait_for(replies, 60)]
    assert received == list(range(500))


def _request_on_thread(demand: reactivex.Observable[int]) -> Callable[[reactivex.Observable[Any]], Any]:
    """Emit items of an iterable source only as ``demand`` allows, from a worker thread."""

    def apply(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        def subscribe(observer: Any, _scheduler: Any = None) -> Any:
            items = iter(source.pipe(ops.to_list()).run())
            credit = threading.Semaphore(0)
            finished = threading.Event()

            def pump() -> None:
                for item in items:
                    while not credit.acquire(timeout=0.1):
                        if finished.is_set():
                            return
                    observer.on_next(item)
                observer.on_completed()

            def grant(n: int) -> None:
                for _ in range(n):
                    credit.release()

            subscription = demand.subscribe(grant, on_completed=finished.set)
            threading.Thread(target=pump, daemon=True).start()
            return subscription

        return reactivex.create(subscribe)

    return apply


async def test_an_observer_sink_fed_past_its_credit_from_a_thread_fails_loudly(echo: tuple[Peer, Peer]) -> None:
    client, _ = echo
    chan = rxc.channel(client, "echo", window=4)
    reader = asyncio.ensure_future(consume_slowly(chan.inbound))
    thread = threading.Thread(target=lambda: [chan.on_next(str(i).encode()) for i in range(100)])
    thread.start()
    with pytest.raises(rx.RxChannelError, match="no credit to send"):
        await asyncio.wait_for(chan.done, 30)
    thread.join()
    reader.cancel()


async def test_observe_on_keeps_the_window_across_schedulers() -> None:
    pulled, delivered = [0], [0]
    ahead: list[int] = []
    finished = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def numbers() -> Any:
        for i in range(400):
            pulled[0] += 1
            ahead.append(pulled[0] - delivered[0])
            yield i

    def slow(value: int) -> None:
        threading.Event().wait(0.0005)
        delivered[0] += 1

    rxc.from_iterable(numbers()).pipe(windowed(8), observe_on(ThreadPoolScheduler(4))).subscribe(
        slow, on_completed=lambda: loop.call_soon_threadsafe(finished.set_result, None)
    )
    await asyncio.wait_for(finished, 60)
    assert delivered[0] == 400
    # at most the window (8) plus the one item a cold source holds to find its end
    assert max(ahead) <= 8 + 1, max(ahead)


def test_observe_on_refuses_a_source_without_demand_or_with_acks() -> None:
    with pytest.raises(TypeError, match="right after"):
        reactivex.of(1).pipe(observe_on(ThreadPoolScheduler(1)))
    with pytest.raises(TypeError, match="cannot also take acks"):
        rxc.from_iterable([1]).pipe(windowed(2, acks=Subject()), observe_on(ThreadPoolScheduler(1)))


def test_a_local_pipeline_runs_without_an_event_loop() -> None:
    out: list[int] = []
    completed = []
    rxc.from_iterable(range(100)).pipe(windowed(8), ops.map(lambda v: v * 2)).subscribe(
        out.append, on_completed=lambda: completed.append(True)
    )
    assert out == [v * 2 for v in range(100)] and completed == [True]  # before subscribe returned


def test_request_n_without_an_event_loop_says_what_to_do() -> None:
    errors: list[Exception] = []
    rxc.from_iterable(range(3)).pipe(request_n(reactivex.of(3))).subscribe(on_error=errors.append)
    assert len(errors) == 1 and "needs a running event loop" in str(errors[0])


async def test_a_remote_stream_subscribed_from_another_thread_is_served_on_its_loop() -> None:
    router = rx.Router()

    @router.stream("n")
    async def numbers(request: rx.Request) -> AsyncIterator[bytes]:
        for i in range(50):
            yield str(i).encode()

    server = await rx.serve_tcp(router)
    client = await rx.connect_tcp("127.0.0.1", server.port)
    try:
        got: list[int] = []
        threads: set[int] = set()
        finished = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def on_next(p: rx.Payload) -> None:
            threads.add(threading.get_ident())
            got.append(int(p.data))

        def subscribe_elsewhere() -> None:
            rxc.request_stream(client, "n").pipe(windowed(4)).subscribe(
                on_next, on_completed=lambda: finished.set_result(None)
            )

        await loop.run_in_executor(None, subscribe_elsewhere)
        await asyncio.wait_for(finished, 30)
        assert got == list(range(50))
        assert threads == {threading.get_ident()}, "the observer is called on the peer's loop thread"
    finally:
        await client.close()
        await server.close()
