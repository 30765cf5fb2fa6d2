"""ReactiveX facade: remote streams as Observables whose demand is set by operators.

reactivex has no backpressure, so demand is explicit here. A :class:`DemandObservable`
is a cold Observable that emits only what its demand allows; the operators in
:mod:`rxchannel.operators` (``windowed``, ``request_n``, ``limit_rate``, ``adaptive``,
``stop_and_wait``) set that demand, and for a remote stream it crosses the wire as
RSocket credit. With no operator the demand is a bounded default window.

When is an item consumed (freeing its credit)?

* by default, when the downstream ``on_next`` returns: with synchronous operators (map,
  filter, scan, buffer_with_count, ...) that is when the whole chain has processed it, so
  a ``filter`` that drops an item does not leak its credit;
* with ``acks=`` (an Observable of counts), when the sink says so: an asynchronous sink
  (a file writer) emits how many upstream items it has finished with. The sink's acks
  must count *upstream* items (1 per item through a ``map``).

Hot Observables have no demand to honour: :func:`~rxchannel.operators.on_backpressure_buffer`,
``..._drop`` and ``..._latest`` turn them into demand sources with an explicit, bounded
overflow policy. A :class:`DemandObservable` is also an async iterable, so it can be the
source of a remote stream or channel, pulled only as the peer grants credit.

Everything runs on the asyncio event loop (use reactivex's ``AsyncIOScheduler`` for
time-based operators); nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from ._types import Payload
from .core import LocalProtocolError, ReceiveCredit, ReplenishPolicy, RxChannelError, Window, check_request_n
from .peer import DEFAULT_WINDOW, Peer

__all__ = [
    "BufferOverflowError",
    "RxFileSink",
    "file_source",
    "Demand",
    "DemandObservable",
    "from_async_iterable",
    "from_iterable",
    "request_channel",
    "request_response",
    "request_stream",
    "to_async_iterable",
]

T = TypeVar("T")


class BufferOverflowError(RxChannelError):
    """A hot source outran its demand and its ``on_backpressure_buffer`` was full (overflow="error")."""


class PullStream(Protocol[T]):  # type: ignore[misc]
    """What a demand source hands its subscriber: the shape of :class:`~rxchannel.RemoteStream`."""

    async def next(self) -> T: ...
    def ack(self, count: int = 1) -> None: ...
    def request(self, n: int) -> None: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Demand:
    """How a demand source is driven: a replenish policy (one per subscription), or manual
    request counts, and optionally acknowledgements from an asynchronous sink."""

    policy: Callable[[], ReplenishPolicy] = lambda: Window(DEFAULT_WINDOW)
    manual: Observable[int] | None = None
    acks: Observable[int] | None = None


Opener = Callable[[ReplenishPolicy | None, bool], PullStream[Any]]


class DemandObservable(Observable[T], Generic[T]):
    """A cold Observable that emits only as demanded. Each subscription opens its own stream."""

    def __init__(self, opener: Opener, demand: Demand | None = None, *, description: str = "demand source"):
        super().__init__()
        self._opener = opener
        self.demand = demand or Demand()
        self.description = description

    def with_demand(self, **changes: Any) -> DemandObservable[T]:
        """A copy driven by a different :class:`Demand` (what the operators use)."""
        return DemandObservable(self._opener, replace(self.demand, **changes), description=self.description)

    def _open(self) -> PullStream[T]:
        policy = None if self.demand.manual is not None else self.demand.policy()
        return self._opener(policy, self.demand.acks is None)

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        loop = asyncio.get_running_loop()
        stream = self._open()
        state = {"disposed": False}
        subscriptions = CompositeDisposable()
        if self.demand.manual is not None:
            subscriptions.add(self.demand.manual.subscribe(on_next=_guard(stream.request, observer)))
        if self.demand.acks is not None:
            subscriptions.add(self.demand.acks.subscribe(on_next=_guard(stream.ack, observer)))

        try_next = getattr(stream, "try_next", None)

        async def pump() -> None:
            since_yield = 0
            try:
                while True:
                    try:
                        item = try_next() if try_next is not None else _PENDING
                        if item is _PENDING:
                            item = await stream.next()
                            since_yield = 0
                        elif since_yield >= 1024:  # a synchronous source: let the loop breathe
                            since_yield = 0
                            await asyncio.sleep(0)
                        since_yield += 1
                    except StopAsyncIteration:
                        if not state["disposed"]:
                            observer.on_completed()
                        return
                    if state["disposed"]:
                        return
                    observer.on_next(item)  # consumed when this returns (auto-ack on the next pull)
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # delivered to the subscriber, never raised into the loop
                if not state["disposed"]:
                    observer.on_error(exc)
            finally:
                subscriptions.dispose()
                await stream.aclose()

        task = loop.create_task(pump())

        def dispose() -> None:
            state["disposed"] = True  # nothing is delivered after dispose returns
            task.cancel()

        return Disposable(dispose)

    def __aiter__(self) -> AsyncGenerator[T, None]:
        return _iterate(self._open())


def _guard(call: Callable[[int], None], observer: abc.ObserverBase[Any]) -> Callable[[int], None]:
    def checked(n: int) -> None:
        try:
            call(n)
        except (LocalProtocolError, ValueError) as exc:
            observer.on_error(exc)  # request(n <= 0) is an error for the subscriber, not a crash

    return checked


async def _iterate(stream: PullStream[T]) -> AsyncGenerator[T, None]:
    try:
        while True:
            try:
                yield await stream.next()
            except StopAsyncIteration:
                return
    finally:
        await stream.aclose()


# --------------------------------------------------------------------------- local sources


_PENDING: Any = object()  # try_next(): nothing can be taken without waiting


class LocalPull(Generic[T]):
    """Pulls from a local source only within the credit its policy grants.

    The same ledger and policies as a remote stream (rxchannel.core), without a wire.
    A synchronous iterable is pulled synchronously (:meth:`try_next`), so an in-process
    pipeline pays no await per item.

    Completion needs no demand (Reactive Streams §2.9): when credit runs out, the next
    item is pulled and held (at most one ahead of demand) so that the end of a cold
    source is found at once. A hot source is never pulled ahead (a held item would go
    stale under ``latest``); its end is signalled by the :class:`HotBuffer` itself.
    """

    def __init__(
        self,
        items: AsyncIterator[T] | None,
        policy: ReplenishPolicy | None,
        auto_ack: bool,
        *,
        sync: Iterator[T] | None = None,
    ):
        self._items = items
        self._sync = sync
        self._policy = policy
        self.auto_ack = auto_ack
        self.credit = ReceiveCredit()
        self._unacked = 0
        self._held: Any = _PENDING
        self._wake: asyncio.Event = asyncio.Event()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._hot = items if isinstance(items, HotBuffer) else None
        if self._hot is not None:
            self._hot.on_end = self._wake.set
        if policy is not None:
            self.credit.granted(policy.initial())

    def _has_credit(self) -> bool:
        return bool(self.credit.outstanding or self.credit.unbounded)

    def try_next(self) -> T:
        """The next item of a synchronous source if credit allows now, else ``_PENDING``.

        Raises:
            StopAsyncIteration: the source has ended (whatever the credit).
        """
        credit = self.credit
        if self._unacked and self.auto_ack:
            # pulling again consumes the previous item. A synchronous pull has at most one
            # item out at a time, so asking the policy only once the credit is used up
            # grants the same as asking after every item.
            credit.consumed(self._unacked)
            self._unacked = 0
            if self._policy is not None and not credit.outstanding:
                more = self._policy.demand(credit, self._loop.time())
                if more:
                    credit.granted(more)
        if self._closed or self._sync is None:
            return _PENDING  # type: ignore[no-any-return]
        if self._held is _PENDING:
            try:
                self._held = next(self._sync)
            except StopIteration:
                raise StopAsyncIteration from None
        if not (credit.outstanding or credit.unbounded):
            return _PENDING  # type: ignore[no-any-return]
        item, self._held = self._held, _PENDING
        credit.received()
        self._unacked += 1
        return item  # type: ignore[no-any-return]

    async def next(self) -> T:
        while self._sync is not None:
            item = self.try_next()
            if item is not _PENDING:
                return item
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        if self.auto_ack and self._unacked:
            self.ack(self._unacked)
        assert self._items is not None
        if self._held is _PENDING and self._hot is None:
            self._held = await self._items.__anext__()  # one ahead: finds the end without credit
        while not self._has_credit():
            if self._closed:
                raise StopAsyncIteration
            if self._hot is not None and self._hot.drained:
                break  # the hot source ended: its completion (or error) needs no credit
            self._wake.clear()
            await self._wake.wait()
        if self._held is _PENDING:
            item = await self._items.__anext__()
        else:
            item, self._held = self._held, _PENDING
        self.credit.received()
        self._unacked += 1
        return item  # type: ignore[no-any-return]

    def ack(self, count: int = 1) -> None:
        if self._closed:
            return  # late acknowledgements after the end are harmless
        if count > self._unacked:
            raise ValueError(f"ack({count}) but only {self._unacked} items are unacknowledged")
        self._unacked -= count
        self.credit.consumed(count)
        if self._policy is not None:
            more = self._policy.demand(self.credit, self._loop.time())
            if more:
                self.credit.granted(more)
                self._wake.set()

    def request(self, n: int) -> None:
        self.credit.granted(check_request_n(n))
        self._wake.set()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._held = _PENDING
            self._wake.set()
            aclose = getattr(self._items, "aclose", None)
            if aclose is not None:
                await aclose()


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

    An item arriving while a consumer waits is handed over directly; otherwise it is
    buffered up to ``capacity``, and past that the overflow policy decides: ``"error"``
    fails the stream, ``"drop_oldest"`` evicts the oldest, ``"drop_latest"`` drops the
    newcomer. ``dropped`` counts what was lost.
    """

    OVERFLOWS = ("error", "drop_oldest", "drop_latest")

    def __init__(self, source: Observable[T], capacity: int, overflow: str):
        check_overflow(capacity, overflow)
        self.capacity = capacity
        self.overflow = overflow
        self.dropped = 0
        self._buffer: deque[T] = deque()
        self._waiter: asyncio.Future[T] | None = None
        self._error: BaseException | None = None
        self._done = False
        #: called once the source has ended (a puller waiting for credit learns it needs none)
        self.on_end: Callable[[], object] | None = None
        self._subscription = source.subscribe(on_next=self._on_next, on_error=self._on_error, on_completed=self._end)

    def _on_next(self, item: T) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(item)
            return
        if len(self._buffer) < self.capacity:
            self._buffer.append(item)
        elif self.overflow == "drop_oldest" and self.capacity:
            self._buffer.popleft()
            self._buffer.append(item)
            self.dropped += 1
        elif self.overflow == "error":
            self._on_error(BufferOverflowError(f"a hot source overflowed its buffer of {self.capacity} items"))
            self._subscription.dispose()
        else:
            self.dropped += 1

    def _on_error(self, error: BaseException) -> None:
        self._error = error
        self._end()

    def _end(self) -> None:
        self._done = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(StopAsyncIteration() if self._error is None else self._error)
        if self.on_end is not None:
            self.on_end()

    @property
    def drained(self) -> bool:
        """The source has ended and every buffered item was taken: only its end remains."""
        return self._done and not self._buffer

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._buffer:
            return self._buffer.popleft()
        if self._done:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    async def aclose(self) -> None:
        self._subscription.dispose()
        self._done = True


def check_overflow(capacity: int, overflow: str) -> None:
    if capacity < 0 or overflow not in HotBuffer.OVERFLOWS:
        raise ValueError(
            f"capacity must be >= 0 and overflow one of {HotBuffer.OVERFLOWS}, got {capacity}, {overflow!r}"
        )


def from_hot(source: Observable[T], capacity: int, overflow: str) -> DemandObservable[T]:
    """A demand source over a hot Observable (see :class:`HotBuffer`); used by on_backpressure_*."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        return LocalPull(HotBuffer(source, capacity, overflow), policy, auto_ack)

    check_overflow(capacity, overflow)  # arguments are checked when the operator is built
    return DemandObservable(opener, description=f"hot source ({overflow}, {capacity})")


# --------------------------------------------------------------------------- remote streams


def request_stream(
    peer: Peer, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None
) -> DemandObservable[Payload]:
    """A remote request-stream as a cold Observable: each subscription opens one stream."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[Payload]:
        window: Any = policy if policy is not None else _manual()
        return peer.request_stream(route, data, info=info, window=window, auto_ack=auto_ack)

    return DemandObservable(opener, description=f"request_stream({route!r})")


def request_channel(
    peer: Peer,
    route: str | None,
    source: AsyncIterable[Any] | Iterable[Any],
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
) -> DemandObservable[Payload]:
    """A remote request-channel: ``source`` (a DemandObservable, iterable or async iterable)
    goes out as the responder grants credit; the Observable emits the responder's items."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[Payload]:
        window: Any = policy if policy is not None else _manual()
        return peer.request_channel(route, source, data, info=info, window=window, auto_ack=auto_ack)

    return DemandObservable(opener, description=f"request_channel({route!r})")


def request_response(
    peer: Peer, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None
) -> Observable[Payload]:
    """A remote request-response as a cold Observable of one item."""

    def subscribe(observer: abc.ObserverBase[Payload], scheduler: abc.SchedulerBase | None = None) -> Disposable:
        task = asyncio.get_running_loop().create_task(peer.request_response(route, data, info=info))

        def done(t: asyncio.Task[Payload]) -> None:
            if t.cancelled():
                return
            if t.exception() is not None:
                observer.on_error(t.exception())  # type: ignore[arg-type]
            else:
                observer.on_next(t.result())
                observer.on_completed()

        task.add_done_callback(done)

        def dispose() -> None:
            task.cancel()

        return Disposable(dispose)

    return reactivex.create(subscribe)


def _manual() -> ReplenishPolicy:
    from .core import Manual

    return Manual(0)


def to_async_iterable(source: Observable[T]) -> AsyncGenerator[T, None]:
    """An async iterator over a demand source, keeping its demand.

    Raises:
        TypeError: ``source`` has no demand (a plain, possibly hot Observable); put an
            ``on_backpressure_*`` operator first to choose what happens on overflow.
    """
    if not isinstance(source, DemandObservable):
        raise TypeError(
            "this Observable has no demand to honour: add on_backpressure_buffer(n), "
            "on_backpressure_drop() or on_backpressure_latest() to choose an overflow policy"
        )
    return source.__aiter__()


# --------------------------------------------------------------------------- files


def file_source(path: Any, *, chunk_size: int | None = None, offset: int = 0) -> DemandObservable[Payload]:
    """A file's chunks as a demand source: each chunk is read (in a thread) only when demanded."""
    from .files import CHUNK_SIZE, FileSource

    def factory() -> AsyncIterable[Payload]:
        return FileSource(path, chunk_size=chunk_size or CHUNK_SIZE, offset=offset)

    return from_async_iterable(factory)


class RxFileSink(abc.ObserverBase[Any]):
    """An Observer that writes items (``Payload`` or bytes) to a file, acknowledging each once written.

    Pair it with a demand operator so that writes, not arrivals, drive demand::

        sink = RxFileSink("out.bin")
        source.pipe(windowed(8, acks=sink.acks), ops.map(transform)).subscribe(sink)
        digest = await sink.done

    It writes ``<path>.part`` and renames it when the stream completes; size and SHA-256
    are verified when the items announce them (raw hub chunks), and a transformed stream,
    which announces none, is accepted as written. On error the ``.part`` is kept.

    Attributes:
        acks: emits 1 per item written (an upstream item, when the transforms are 1:1).
        done: resolves to the SHA-256 of what was written, or fails with the stream's error.
    """

    def __init__(self, path: Any, *, resume: bool = False):
        from reactivex.subject import Subject

        from .files import FileSink

        self.sink = FileSink(path, resume=resume, require_digest=False)
        self.acks: Subject[int] = Subject()
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[str] = loop.create_future()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # bounded by the upstream window
        self._task = loop.create_task(self._run())

    def on_next(self, value: Any) -> None:
        self._queue.put_nowait(("item", value))

    def on_error(self, error: Exception) -> None:
        self._queue.put_nowait(("error", error))

    def on_completed(self) -> None:
        self._queue.put_nowait(("end", None))

    async def _run(self) -> None:
        try:
            await self.sink.open()
            while True:
                kind, value = await self._queue.get()
                if kind == "item":
                    await self.sink.write(value)
                    self.acks.on_next(1)
                elif kind == "end":
                    self.done.set_result(await self.sink.finish())
                    return
                else:
                    raise value
        except BaseException as exc:
            await self.sink.abort()
            if not self.done.done():
                self.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
