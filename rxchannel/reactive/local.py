"""Local demand sources: iterables, async iterables and hot Observables, pulled only on demand."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from reactivex import Observable

from rxchannel.core import InboundDemand, ReplenishPolicy, RxChannelError
from rxchannel.runtime.ahead import Ahead

from ._threads import LoopThread
from .observable import PENDING, DemandObservable, PullStream

__all__ = [
    "BufferOverflowError",
    "HotBuffer",
    "LocalPull",
    "check_overflow",
    "from_async_iterable",
    "from_hot",
    "from_iterable",
]

T = TypeVar("T")


class BufferOverflowError(RxChannelError):
    """A hot source outran its demand and its ``on_backpressure_buffer`` was full (overflow="error")."""


class LocalPull(Generic[T]):
    """Pulls from a local source only within the demand its :class:`InboundDemand` allows.

    The same demand engine as a remote stream (rxchannel.core), without a wire; every local
    pull is one (iterables, hot buffers, a balanced share's members, a channel's prepaid
    inbound), differing only in its source and how :meth:`next` waits for its turn. A
    synchronous iterable is pulled synchronously, a batch at a time (:meth:`try_batch`), so
    an in-process pipeline pays no await per item.

    Completion needs no demand: a cold source is read one item ahead of demand
    (:class:`~rxchannel.runtime.ahead.Ahead`) so that its end is found at once. A hot
    source is never read ahead (a held item would go stale under ``latest``); its end is
    signalled by the :class:`HotBuffer` itself.
    """

    def __init__(
        self,
        items: AsyncIterator[T] | None,
        policy: ReplenishPolicy | None,
        auto_ack: bool,
        *,
        sync: Iterator[T] | None = None,
        on_request: Callable[[int], object] | None = None,
    ):
        """``on_request(n)``: told of every :meth:`request` (a source whose own demand follows
        this one's: a remote stream asked for more only as the pipeline requests)."""
        self._items = items
        self._on_request = on_request
        self._ahead = Ahead(items) if items is not None else None
        self._sync = sync
        self._loop = asyncio.get_running_loop()
        self.demand = InboundDemand(policy, auto_ack=auto_ack)
        self._held: Any = PENDING
        self._exhausted = False
        self.wake: asyncio.Event = asyncio.Event()
        self._closed = False
        self._hot = items if isinstance(items, HotBuffer) else None
        if self._hot is not None:
            self._hot.on_end = self.wake.set
        self.demand.start(self._loop.time())

    def _ended(self) -> StopAsyncIteration:
        self.demand.end()
        return StopAsyncIteration()

    def try_batch(self, limit: int = 1024) -> list[T]:
        """The next items of a synchronous source, as many as demand allows now (at most
        ``limit``), or ``PENDING`` when none may be taken.

        Raises:
            StopAsyncIteration: the source has ended (whatever the demand).
        """
        if self._closed or self._sync is None:
            return PENDING  # type: ignore[no-any-return]
        if self._held is PENDING:
            if self._exhausted:
                raise self._ended()
            try:
                self._held = next(self._sync)
            except StopIteration:
                raise self._ended() from None
        taken = self.demand.take(limit, self._loop.time())
        if not taken:
            return PENDING  # type: ignore[no-any-return]
        items = [self._held]
        self._held = PENDING
        for item in itertools.islice(self._sync, taken - 1):
            items.append(item)
        if len(items) < taken:
            self._exhausted = True  # delivered first, then completed
        return items

    async def next(self) -> T:
        while self._sync is not None:
            items = self.try_batch(1)
            if items is not PENDING:
                return items[0]
            if self._closed:
                raise StopAsyncIteration
            self.wake.clear()
            await self.wake.wait()
        ahead, demand = self._ahead, self.demand
        assert ahead is not None
        if self._hot is None and not await ahead.fill():
            raise self._ended()
        while not demand.take(1, self._loop.time()):
            if self._closed:
                raise StopAsyncIteration
            if self._hot is not None and self._hot.drained and not await ahead.fill():
                raise self._ended()  # the hot source ended: its end (or error) needs no demand
            self.wake.clear()
            await self.wake.wait()
        if not await ahead.fill():
            raise self._ended()
        return ahead.take()

    def ack(self, count: int = 1) -> None:
        if not self._closed and self.demand.ack(count, self._loop.time()):
            self.wake.set()

    def request(self, n: int) -> None:
        self.demand.request(n, self._loop.time())
        if self._on_request is not None:
            self._on_request(n)
        self.wake.set()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._held = PENDING
            self.demand.end()
            self.wake.set()
            if self._ahead is not None:
                await self._ahead.aclose()
            close = getattr(self._sync, "close", None)
            if close is not None:
                close()  # a generator's finally runs now, not whenever it is collected (§3.12)


def from_async_iterable(factory: Callable[[], AsyncIterable[T]] | AsyncIterable[T]) -> DemandObservable[T]:
    """A demand source over an async iterable (pass a factory for a re-subscribable source)."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        items = factory() if callable(factory) else factory
        return LocalPull(_managed(items), policy, auto_ack)

    return DemandObservable(opener, description="async iterable")


async def _managed(items: AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate ``items``, entering its iterator's context if it has one (aiostream's
    streamers must be iterated inside ``async with``), and close it when done."""
    iterator: Any = items.__aiter__()
    if hasattr(iterator, "__aenter__"):
        async with iterator as entered:
            async for item in entered:
                yield item
        return
    try:
        async for item in iterator:
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def from_iterable(items: Iterable[T]) -> DemandObservable[T]:
    """A demand source over an iterable: each item is taken only when demanded."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        return LocalPull(None, policy, auto_ack, sync=iter(items))

    return DemandObservable(opener, description="iterable")


class HotBuffer(Generic[T]):
    """An async iterator over a hot Observable with a bounded buffer and an overflow policy.

    An item arriving while a consumer waits goes to it; otherwise it is buffered up to
    ``capacity``, and past that the overflow policy decides: ``"error"`` fails the stream,
    ``"drop_oldest"`` evicts the oldest, ``"drop_latest"`` drops the newcomer. ``dropped``
    counts what was lost: every item is delivered or counted, none lost silently.

    The source may emit from any thread (a ``Subject`` fed by a thread, an interval on a
    thread scheduler): the buffer is guarded by a lock, the policy applies as items
    arrive (so nothing piles up unbounded on the way to the loop), and the consumer on the
    event loop is woken thread-safely.
    """

    OVERFLOWS = ("error", "drop_oldest", "drop_latest")

    def __init__(
        self, source: Observable[T], capacity: int, overflow: str, on_drop: Callable[[T], object] | None = None
    ):
        check_overflow(capacity, overflow)
        self.capacity = capacity
        self.overflow = overflow
        self.dropped = 0
        self._on_drop = on_drop
        self._owner = LoopThread()
        self._lock = threading.Lock()
        self._buffer: deque[T] = deque()
        self._waiting = False  # a consumer waits: one more slot, for it (guarded by the lock)
        self._handoff: Any = PENDING  # the item that slot holds until the consumer runs
        self._wake_queued = False
        self._waiter: asyncio.Future[None] | None = None  # the loop thread's only
        self._error: BaseException | None = None
        self._done = False
        #: called once (on the loop thread) when the source has ended: a puller waiting for
        #: credit learns it needs none
        self.on_end: Callable[[], object] | None = None
        self._subscription = source.subscribe(on_next=self._on_next, on_error=self._on_error, on_completed=self._end)

    def _on_next(self, item: T) -> None:  # any thread
        overflowed = False
        dropped: Any = PENDING
        with self._lock:
            if self._done:
                return  # after the end (or an overflow error), nothing more is taken
            if self._waiting:
                self._waiting = False
                self._handoff = item  # the waiting consumer's: outside the buffer, never evicted
            elif len(self._buffer) < self.capacity:
                self._buffer.append(item)
            elif self.overflow == "drop_oldest" and self.capacity:
                dropped = self._buffer.popleft()
                self._buffer.append(item)
                self.dropped += 1
            elif self.overflow == "error":
                overflowed = True
            else:
                dropped = item
                self.dropped += 1
        if dropped is not PENDING and self._on_drop is not None:
            self._on_drop(dropped)
        if overflowed:
            self._on_error(BufferOverflowError(f"a hot source overflowed its buffer of {self.capacity} items"))
            self._subscription.dispose()
        else:
            self._notify()

    def _on_error(self, error: BaseException) -> None:  # any thread
        self._finish(error)

    def _end(self) -> None:  # any thread
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done, self._error = True, error
        self._owner.call(self._ended)

    def _ended(self) -> None:
        self._wake()
        if self.on_end is not None:
            self.on_end()

    def _notify(self) -> None:
        if self._owner.here:
            self._wake()
            return
        with self._lock:
            if self._wake_queued:
                return  # one wake-up is on its way: it will see this item too
            self._wake_queued = True
        self._owner.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_queued = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def drained(self) -> bool:
        """The source has ended and every buffered item was taken: only its end remains."""
        with self._lock:
            return self._done and not self._buffer and self._handoff is PENDING

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            with self._lock:
                if self._handoff is not PENDING:
                    item, self._handoff = self._handoff, PENDING
                    return item  # type: ignore[no-any-return]
                if self._buffer:
                    return self._buffer.popleft()
                if self._done:
                    if self._error is not None:
                        raise self._error
                    raise StopAsyncIteration
                self._waiting = True
            self._waiter = self._owner.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
                with self._lock:
                    self._waiting = False

    async def aclose(self) -> None:
        self._subscription.dispose()
        with self._lock:
            self._done = True


def check_overflow(capacity: int, overflow: str) -> None:
    if capacity < 0 or overflow not in HotBuffer.OVERFLOWS:
        raise ValueError(
            f"capacity must be >= 0 and overflow one of {HotBuffer.OVERFLOWS}, got {capacity}, {overflow!r}"
        )


def from_hot(
    source: Observable[T], capacity: int, overflow: str, on_drop: Callable[[T], object] | None = None
) -> DemandObservable[T]:
    """A demand source over a hot Observable (see :class:`HotBuffer`); used by on_backpressure_*."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        return LocalPull(HotBuffer(source, capacity, overflow, on_drop), policy, auto_ack)

    check_overflow(capacity, overflow)  # arguments are checked when the operator is built
    return DemandObservable(opener, description=f"hot source ({overflow}, {capacity})")
