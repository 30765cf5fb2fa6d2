"""Demand Observables: cold Observables that emit only as their demand allows.

reactivex has no backpressure, so demand is explicit here. A :class:`DemandObservable`
opens one pull stream per subscription (a remote stream, or a local source) and emits
what that stream's demand lets through; the operators in :mod:`rxchannel.operators` set
the demand (a replenish policy, manual counts, acknowledgements from an async sink).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from reactivex import Observable, Observer, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable

from rxchannel.core import DEFAULT_WINDOW, LocalProtocolError, ReplenishPolicy, Window

from ._threads import LoopThread, on_loop

__all__ = ["PENDING", "Demand", "DemandObservable", "PullStream", "to_async_iterable"]

T = TypeVar("T")

#: what ``try_batch()`` returns when nothing can be taken without waiting
PENDING: Any = object()


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
    """A cold Observable that emits only as demanded. Each subscription opens its own stream.

    **Threads.** A stream lives on one asyncio event loop. Subscribing on that loop's
    thread is the usual case. A remote stream (``loop`` is its peer's loop) may also be
    subscribed from any other thread: the subscription is carried onto the loop and the
    observer is called there. A local source subscribed where no event loop runs (plain
    synchronous code) runs to its end in the calling thread, on a private loop, before
    ``subscribe`` returns (as reactivex's own synchronous sources do). Demand counts
    (``request_n``) and acknowledgements (``acks=``) may come from any thread.
    """

    def __init__(
        self,
        opener: Opener,
        demand: Demand | None = None,
        *,
        description: str = "demand source",
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        super().__init__()
        self._opener = opener
        self.demand = demand or Demand()
        self.description = description
        #: the event loop its streams belong to (a remote stream's peer's), or None for a local source
        self.loop = loop

    def with_demand(self, **changes: Any) -> DemandObservable[T]:
        """A copy driven by a different :class:`Demand` (what the operators use)."""
        return DemandObservable(
            self._opener, replace(self.demand, **changes), description=self.description, loop=self.loop
        )

    def _open(self) -> PullStream[T]:
        policy = None if self.demand.manual is not None else self.demand.policy()
        return self._opener(policy, self.demand.acks is None)

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is not None and running is not self.loop:
            return self._subscribe_from_thread(self.loop, observer)
        if running is None:
            return self._run_here(observer)
        return self._subscribe_on_loop(running, observer)

    def _subscribe_from_thread(
        self, loop: asyncio.AbstractEventLoop, observer: abc.ObserverBase[T]
    ) -> abc.DisposableBase:
        """Subscribe on ``loop`` (another thread's): the observer is called on the loop's thread."""
        if loop.is_closed():
            observer.on_error(RuntimeError(f"{self.description}: its event loop is closed"))
            return Disposable()
        subscription = SingleAssignmentDisposable()

        def start() -> None:
            if not subscription.is_disposed:
                subscription.disposable = self._subscribe_on_loop(loop, observer)

        def dispose() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(subscription.dispose)

        loop.call_soon_threadsafe(start)
        return Disposable(dispose)

    def _run_here(self, observer: abc.ObserverBase[T]) -> abc.DisposableBase:
        """No event loop in this thread: run a local source to its end on a private loop."""
        if self.demand.manual is not None:
            observer.on_error(
                RuntimeError(
                    f"{self.description} is driven by request_n, which needs a running event loop to wait for "
                    "requests: subscribe inside asyncio (asyncio.run(...)), or use windowed/limit_rate instead"
                )
            )
            return Disposable()

        async def run() -> None:
            finished = asyncio.get_running_loop().create_future()

            def end() -> None:
                if not finished.done():
                    finished.set_result(None)

            def on_error(error: Exception) -> None:
                observer.on_error(error)
                end()

            def on_completed() -> None:
                observer.on_completed()
                end()

            forward = Observer(observer.on_next, on_error, on_completed)
            subscription = self._subscribe_on_loop(asyncio.get_running_loop(), forward)
            try:
                await finished
            finally:
                subscription.dispose()

        asyncio.run(run())
        return Disposable()

    def _subscribe_on_loop(self, loop: asyncio.AbstractEventLoop, observer: abc.ObserverBase[T]) -> abc.DisposableBase:
        owner = LoopThread(loop)
        stream = self._open()
        state = {"disposed": False}
        subscriptions = CompositeDisposable()

        try_batch = getattr(stream, "try_batch", None)

        async def pump() -> None:
            since_yield = 0
            try:
                while not state["disposed"]:
                    try:
                        batch = try_batch() if try_batch is not None else PENDING
                        if batch is PENDING:
                            batch = (await stream.next(),)
                            since_yield = 0
                        elif since_yield >= 1024:  # a synchronous source: let the loop breathe
                            since_yield = 0
                            await asyncio.sleep(0)
                        since_yield += len(batch)
                    except StopAsyncIteration:
                        if not state["disposed"]:
                            observer.on_completed()
                        return
                    for item in batch:
                        if state["disposed"]:
                            return
                        observer.on_next(item)  # consumed when this returns (acknowledged on the next pull)
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # delivered to the subscriber, never raised into the loop
                if not state["disposed"]:
                    observer.on_error(exc)
            finally:
                subscriptions.dispose()
                await stream.aclose()

        task = loop.create_task(pump())  # it first runs after the subscriptions below are in place
        if self.demand.manual is not None:
            # a remote sink's demand ends with its stream, and stops the pipeline it drove; any
            # other demand that completes only means that no more will be requested
            def demand_ended(_error: Exception | None = None) -> None:
                task.cancel()

            ends = on_loop(owner, demand_ended) if getattr(self.demand.manual, "ends_pipeline", False) else None
            subscriptions.add(
                self.demand.manual.subscribe(
                    on_next=on_loop(owner, _guard(stream.request, observer)), on_completed=ends, on_error=ends
                )
            )
        if self.demand.acks is not None:
            subscriptions.add(self.demand.acks.subscribe(on_next=on_loop(owner, _guard(stream.ack, observer))))

        def stop() -> None:
            # disposed from inside the pump (an on_next that disposes: take(n), a failing
            # observer), it stops at its next check; a cancel would interrupt the await that
            # closes the source in its finally, leaving the source to the garbage collector
            if asyncio.current_task() is not task:
                task.cancel()

        def dispose() -> None:
            state["disposed"] = True  # nothing is delivered after dispose returns
            owner.call(stop)

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
