"""Our outbound half of one stream: a source pulled only within credit and transport room.

Both levels of flow control (DESIGN.md §3) meet here: an item goes out only when the
peer has granted credit for it *and* the transport is under its high-water mark, and the
source is pulled only then, so a file is read at the pace of the remote sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, Protocol

from rxchannel.core import Connection

from .values import Payload, as_payload

__all__ = ["Outlet", "Producer"]

_FLUSH_BYTES = 64 * 1024  # flush a producer's frames once this much is queued
_YIELD_EVERY = 64  # let other tasks run after this many items sent without suspending


class Outlet(Protocol):
    """What a producer needs from its peer: the connection, room on the transport, flushing."""

    @property
    def connection(self) -> Connection: ...
    @property
    def writable(self) -> bool: ...
    async def drain(self) -> None: ...
    def flush(self) -> None: ...
    def flush_soon(self) -> None: ...


async def _aiter_sync(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


class Producer:
    """Our outbound half of ``stream_id``: :meth:`run` sends a source; :meth:`wake` when credit arrives.

    ``task`` is the task that will run it (a handler's, for a responder), cancelled when
    the peer cancels the stream.
    """

    __slots__ = ("_waiter", "outlet", "stream_id", "task")

    def __init__(self, outlet: Outlet, stream_id: int):
        self.outlet = outlet
        self.stream_id = stream_id
        self.task: asyncio.Task[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def credit_granted(self, n: int) -> None:
        """The remote granted ``n`` more: a producer waiting for credit goes on."""
        self.wake()

    def stop(self, error: Any = None) -> None:
        """The remote cancelled, or the stream ended: the producing task stops."""
        if self.task is not None:
            self.task.cancel()

    async def run(self, source: AsyncIterable[Any] | Iterable[Any]) -> None:
        """Send every item of ``source``, then COMPLETE.

        COMPLETE needs no credit (Protocol.md "Reactive Streams Semantics"; Reactive Streams
        §1.5 and §2.9), so the end of the source must be found without any: when credit runs
        out, the next item is pulled anyway and held (at most one item ahead of demand); if
        the source has ended instead, COMPLETE goes out at once. A source that marks its
        last item (``Payload.last``; such a source sets ``marks_last``) is never pulled
        ahead: its last item goes out as one PAYLOAD with NEXT|COMPLETE.

        Returns when the stream is over; the source's exceptions propagate (the caller
        turns them into ERROR).
        """
        out, sid = self.outlet, self.stream_id
        conn = out.connection
        pull_ahead = not getattr(source, "marks_last", False)
        items: AsyncIterator[Any] = source.__aiter__() if isinstance(source, AsyncIterable) else _aiter_sync(source)
        held: Payload | None = None
        since_yield = unflushed = 0
        try:
            while True:
                if held is None and (pull_ahead or conn.send_window(sid)):
                    if not out.writable:
                        out.flush()
                        await out.drain()
                        since_yield = 0
                    try:
                        held = as_payload(await items.__anext__())
                    except StopAsyncIteration:
                        if conn.can_send(sid):
                            conn.send_complete(sid)
                            out.flush()
                        return
                while not conn.send_window(sid):
                    if not conn.can_send(sid):
                        return  # cancelled, or ended by an error, while we waited
                    self._waiter = asyncio.get_running_loop().create_future()
                    out.flush()
                    await self._waiter
                    since_yield = 0
                if held is None:
                    continue  # credit arrived for a source that is never pulled ahead
                payload, held = held, None
                conn.send_payload(sid, payload.data, payload.metadata, complete=payload.last)
                if payload.last:
                    out.flush()
                    return
                unflushed += len(payload.data)
                if unflushed >= _FLUSH_BYTES:
                    unflushed = 0
                    out.flush()
                else:
                    out.flush_soon()
                since_yield += 1
                if since_yield >= _YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
