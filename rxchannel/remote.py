"""The inbound half of a stream as an async iterator with a bounded window.

Items are buffered only as far as credit allows (the window), so the buffer is bounded
by construction. By default an item counts as consumed when the consumer pulls the next
one (or leaves the loop); with ``auto_ack=False`` the consumer acknowledges explicitly
with :meth:`RemoteStream.ack` (an asynchronous sink acknowledging what it has written).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING

from rxchannel.core import RxChannelError, StreamCancelledError, check_request_n

from ._types import Payload

if TYPE_CHECKING:
    from .peer import Peer

__all__ = ["RemoteStream"]


class RemoteStream:
    """Items from the peer on one stream; iterate with ``async for``.

    Leaving the loop (``break``, an exception, task cancellation) or :meth:`aclose`
    cancels the stream on the peer. Iterate once.
    """

    def __init__(
        self,
        peer: Peer,
        opener: Callable[[RemoteStream, int | None], int] | None,
        *,
        auto_ack: bool = True,
        stream_id: int = 0,
        lazy: bool = False,
    ):
        self._peer = peer
        self._opener = opener
        self.stream_id = stream_id
        self.auto_ack = auto_ack
        self._items: deque[Payload] = deque()
        self._done = False
        self._error: RxChannelError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._unacked = 0
        self._closed = False
        #: items delivered to the consumer so far
        self.delivered = 0
        #: opened by the first request(n) rather than the first pull (manual demand from 0)
        self._lazy = lazy

    # ------------------------------------------------------------ fed by the peer

    def _push(self, payload: Payload) -> None:
        self._items.append(payload)
        self._wake()

    def _finish(self, error: RxChannelError | None = None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ------------------------------------------------------------ consumer side

    def _open(self, first_n: int | None = None) -> None:
        if self._opener is not None:
            opener, self._opener = self._opener, None
            self.stream_id = opener(self, first_n)

    @property
    def buffered(self) -> int:
        """Items received and not yet pulled."""
        return len(self._items)

    def ack(self, count: int = 1) -> None:
        """Mark ``count`` pulled items as consumed, letting the window refill.

        With ``auto_ack=True`` (the default) pulling the next item does this.
        """
        if self._closed or (self._done and not self._items and not self._unacked):
            return  # late acknowledgements after the end are harmless
        if count > self._unacked:
            raise ValueError(f"ack({count}) but only {self._unacked} pulled items are unacknowledged")
        self._unacked -= count
        self._peer._consumed(self.stream_id, count)

    def request(self, n: int) -> None:
        """Grant ``n`` more items by hand (for a manual policy).

        On a stream not yet opened, the first request opens it with ``n`` as the initial
        demand (RSocket requests carry at least 1).
        """
        if self._opener is not None:
            check_request_n(n)
            self._open(first_n=n)
            self._wake()
            return
        self._peer._request_n(self.stream_id, n)

    async def next(self) -> Payload:
        """The next item.

        Raises:
            StopAsyncIteration: the peer completed the stream.
            RemoteError / ConnectionLostError / ...: the stream failed.
        """
        if self._closed:
            raise StopAsyncIteration
        while self._lazy and self._opener is not None and not self._closed:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter  # the first request(n) opens the stream
        self._open()
        if self.auto_ack and self._unacked:
            self.ack(self._unacked)
        while not self._items:
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self._unacked += 1
        self.delivered += 1
        return self._items.popleft()

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Payload]:
        try:
            while True:
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
            self._peer._cancel_inbound(self.stream_id)
            self._finish(StreamCancelledError(f"stream {self.stream_id} was cancelled by this side"))
        self._items.clear()

    async def collect(self) -> list[Payload]:
        """Every item until the stream completes."""
        return [item async for item in self]

    async def __aenter__(self) -> RemoteStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
