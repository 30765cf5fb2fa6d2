"""The inbound half of a stream as an async iterator.

Demand is the core's (:class:`rxchannel.core.InboundDemand`, one per stream, driven
through the connection): items are buffered only as far as credit allows, so the buffer
is bounded by construction. By default an item counts as done when the consumer asks for
the next one (or leaves the loop); with ``auto_ack=False`` the consumer acknowledges with
:meth:`RemoteStream.ack` (an asynchronous sink, once it has written).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from rxchannel.core import InboundDemand, RxChannelError, StreamCancelledError, check_request_n

from .closing import ClosesOnExit
from .link import Link
from .values import Payload

__all__ = ["RemoteStream"]


#: Opens the stream on first use: called with the stream and the initial demand (None: the policy's).
Opener = Callable[["RemoteStream", int | None], int]


class RemoteStream(ClosesOnExit):
    """Items from the peer on one stream; iterate with ``async for``.

    Leaving the loop (``break``, an exception, task cancellation) or :meth:`aclose`
    cancels the stream on the peer. Iterate once.

    Attributes:
        stream_id: 0 until the request went out (a stream opens when first used).
        delivered: items handed to the consumer so far.
    """

    def __init__(self, link: Link, *, stream_id: int = 0, opener: Opener | None = None, lazy: bool = False):
        self._link = link
        self._opener = opener
        self.stream_id = stream_id
        self._items: deque[Payload] = deque()
        self._done = False
        self._error: RxChannelError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.delivered = 0
        #: opened by the first request(n) rather than the first pull (manual demand from 0)
        self._lazy = lazy
        #: the stream's demand, the core's (looked up once the stream is open and has one)
        self._d: InboundDemand | None = None

    # ------------------------------------------------------------ fed by the runtime

    def feed(self, payload: Payload) -> None:
        """An item arrived (called by the runtime)."""
        self._items.append(payload)
        if self._waiter is not None:
            self._wake()

    def feed_all(self, items: list[bytes]) -> None:
        """Items (data only) arrived (called by the runtime)."""
        self._items.extend(map(Payload, items))
        if self._waiter is not None:
            self._wake()

    def finish(self, error: RxChannelError | None = None) -> None:
        """The peer ended the stream, with ``error`` or completed (called by the runtime)."""
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ consumer side

    def _open(self, first_n: int | None = None) -> None:
        if self._opener is not None:
            opener, self._opener = self._opener, None
            self.stream_id = opener(self, first_n)

    @property
    def buffered(self) -> int:
        """Items received and not yet pulled."""
        return len(self._items)

    @property
    def _demand(self) -> InboundDemand | None:
        if self._d is None and self.stream_id:
            self._d = self._link.connection.demand(self.stream_id)
        return self._d

    @property
    def in_flight(self) -> int:
        """Items granted that the consumer has not finished with (0 once the stream is over)."""
        demand = self._demand
        return demand.in_flight if demand is not None and not demand.ended else 0

    def ack(self, count: int = 1) -> None:
        """Mark ``count`` pulled items as done, letting the window refill (``auto_ack=False``).

        Raises:
            LocalProtocolError: more than were pulled and not yet acknowledged (while the
                stream is live; after its end acknowledgements are harmless no-ops).
        """
        demand = self._demand
        if demand is not None and not self._closed and demand.ack(count, self._link.now()):
            self._link.flush()

    def request(self, n: int) -> None:
        """Grant ``n`` more items by hand (for a manual policy).

        On a stream not yet opened, the first request opens it with ``n`` as the initial
        demand (RSocket requests carry at least 1).

        Raises:
            LocalProtocolError: ``n`` is not positive (Reactive Streams §3.9).
        """
        if self._opener is not None:
            self._open(first_n=check_request_n(n))
            self._wake()
            return
        demand = self._demand
        if demand is None:
            check_request_n(n)
        elif demand.request(n, self._link.now()):
            self._link.flush_soon()

    async def next(self) -> Payload:
        """The next item.

        Raises:
            StopAsyncIteration: the peer completed the stream.
            RemoteError / ConnectionLostError / ...: the stream failed.
        """
        if self._closed:
            raise StopAsyncIteration
        while self._lazy and self._opener is not None and not self._closed:
            await self._wait()  # the first request(n) opens the stream
        self._open()
        demand = self._demand
        if self._items:  # the common case under load: at most one call into the core
            if demand is not None and demand.take_one(self._link.now()):
                self._link.flush()  # credit goes out now: waiting a loop turn halves small-item throughput
        else:
            if demand is not None and demand.wants_next(self._link.now()):
                self._link.flush()
            while not self._items:
                if self._done or self._closed:
                    if self._error is not None:
                        raise self._error
                    raise StopAsyncIteration
                await self._wait()
            if demand is not None:
                demand.pulled()
        self.delivered += 1
        return self._items.popleft()

    async def _wait(self) -> None:
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        await waiter

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self._iterate()

    async def __anext__(self) -> Payload:
        """The next item (:meth:`next`): the stream is also an async iterator of its own,
        for a pull that holds it directly (``async for`` uses :meth:`__aiter__`'s faster loop)."""
        return await self.next()

    async def _iterate(self) -> AsyncIterator[Payload]:
        items = self._items
        try:
            while True:
                demand = self._d
                if items and demand is not None and demand.quiet_left and not self._closed:
                    # next()'s common case, inlined: a quiet take of a buffered item (InboundDemand.take_one)
                    demand.quiet_left -= 1
                    demand.untold += 1
                    self.delivered += 1
                    yield items.popleft()
                    continue
                try:
                    item = await self.next()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving: cancels the stream on the peer if it is still open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        if self._opener is None and not self._done:
            self._link.cancel(self.stream_id)
            self.finish(StreamCancelledError(f"stream {self.stream_id} was cancelled by this side"))
        self._items.clear()

    async def collect(self) -> list[Payload]:
        """Every item until the stream completes."""
        return [item async for item in self]
