"""Our outbound half of one stream: what goes out is what the remote's credit allows.

Both levels of flow control (docs/architecture.md, "The path of one credit") meet here: an
item goes out only when the peer has granted credit for it *and* the transport is under
its high-water mark. A :class:`RemoteSink` is fed one of two ways:

- pulled: :meth:`RemoteSink.run` sends a source (a handler's result, a channel's source),
  pulling it only then, so a file is read at the pace of the remote sink;
- pushed: the application calls :meth:`RemoteSink.send` (waits for credit and transport
  room) or :meth:`RemoteSink.try_send` (refuses without credit: never a silent buffer), and
  sees every grant the remote makes (:meth:`RemoteSink.on_credit`), which is the demand an
  Rx pipeline follows. A requester gets one from ``Peer.remote_sink`` (a request-channel;
  ``replies`` has the responder's items), a responder from ``Request.outbound``.

The credit itself is the core's (:class:`rxchannel.core.SendCredit`): this adapter keeps
no count of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

from rxchannel.core import ClosedResourceError, LocalProtocolError, RxChannelError, StreamCancelledError

from .link import Link
from .stream import RemoteStream
from .values import Payload, as_payload

__all__ = ["RemoteSink"]

_FLUSH_BYTES = 64 * 1024  # flush a source's frames once this much is queued
_YIELD_EVERY = 64  # let other tasks run after this many items sent without suspending


def _unsent(exc: BaseException) -> tuple[int, str]:
    raise exc  # a pulled sink's failures propagate to its caller, which sends the ERROR


async def _aiter_sync(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


class RemoteSink:
    """Items we send on one stream, within the remote's credit.

    Attributes:
        stream_id: the stream.
        replies: for a request-channel we made, the responder's items (else None).
        task: the task that runs :meth:`run` (a handler's, for a responder), cancelled when
            the remote cancels the stream; None for a sink the application pushes to.
        done: resolves when our half is over (completed, failed, cancelled by the remote,
            or the connection ended; then with the reason as its exception).
        sent: items sent through :meth:`send`/:meth:`try_send`.
    """

    __slots__ = ("_credit_callbacks", "_error_for", "_link", "_waiter", "done", "replies", "sent", "stream_id", "task")

    def __init__(
        self,
        link: Link,
        stream_id: int,
        *,
        on_error: Callable[[BaseException], tuple[int, str]] = _unsent,
        replies: RemoteStream | None = None,
    ):
        """``on_error`` maps a local failure to the ERROR the remote sees (the router's
        ``error_for``: only an ApplicationError's text leaves this side)."""
        self._link = link
        self.stream_id = stream_id
        self.replies = replies
        self._error_for = on_error
        self._credit_callbacks: list[Callable[[int], object]] = []
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[Any] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent = 0

    # ------------------------------------------------------------ fed by the runtime

    def credit_granted(self, n: int) -> None:
        """The remote granted ``n`` more (called by the runtime)."""
        for callback in list(self._credit_callbacks):
            callback(n)
        self._wake()

    def stop(self, error: RxChannelError | None = None) -> None:
        """The remote cancelled our half, or the stream or connection ended (called by the
        runtime): a task running :meth:`run` is cancelled, a pushing application sees
        ``error`` on its next send."""
        self._end(error or StreamCancelledError(f"the remote cancelled stream {self.stream_id}: it wants no more"))
        if self.task is not None:
            self.task.cancel()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _end(self, error: BaseException | None) -> None:
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)
                self.done.exception()  # retrieved: a sink nobody awaits does not log it
        self._wake()

    async def _wait_credit(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        self._link.flush()
        await self._waiter

    # ------------------------------------------------------------ pulled

    async def run(self, source: AsyncIterable[Any] | Iterable[Any]) -> None:
        """Send every item of ``source``, then COMPLETE.

        COMPLETE needs no credit, so when credit runs out the next item is read ahead (one
        at most) and an ended source completes at once: the rule of :class:`~.ahead.Ahead`,
        written inline here because this loop runs once per item on the wire (an await
        more per item costs ~5% of the per-item budget; ``benchmarks/pipelines.py``). A source that marks its
        last item (``Payload.last``; such a source sets ``marks_last``) is never pulled
        ahead: its last item goes out as one PAYLOAD with NEXT|COMPLETE.

        Returns when the stream is over; the source's exceptions propagate (the caller
        turns them into ERROR).
        """
        out, sid = self._link, self.stream_id
        conn = out.connection
        send_item, flush_soon = conn.send_item, out.flush_soon
        pull_ahead = not getattr(source, "marks_last", False)
        items: AsyncIterator[Any] = source.__aiter__() if isinstance(source, AsyncIterable) else _aiter_sync(source)
        holding = last = False
        data: bytes = b""
        metadata: bytes | None = None
        credit = conn.send_window(sid)  # may be stale-low after an await (credit only grows then): re-read at 0
        since_yield = unflushed = 0
        try:
            while True:
                if not holding and (pull_ahead or credit > 0):
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        if conn.can_send(sid):
                            conn.send_complete(sid)
                            out.flush()
                        return
                    if type(item) is bytes:  # the common case: no Payload object per item
                        data, metadata, last = item, None, False
                    else:
                        payload = as_payload(item)
                        data, metadata, last = payload.data, payload.metadata, payload.last
                    holding = True
                # one call per item: sends if the stream is open and has credit (-1 otherwise)
                left = send_item(sid, data, metadata, last) if holding else -1
                if left < 0:
                    if not conn.can_send(sid):
                        return  # cancelled, or ended by an error, while we waited
                    credit = conn.send_window(sid)
                    if credit == 0:
                        await self._wait_credit()
                        since_yield = 0
                        credit = conn.send_window(sid)
                    continue
                holding, credit = False, left
                if last:
                    out.flush()
                    return
                unflushed += len(data)
                since_yield += 1
                if unflushed >= _FLUSH_BYTES:
                    # the transport's queue grows only when frames are flushed: check its room then
                    unflushed = 0
                    out.flush()
                    if not out.writable:
                        await out.drain()
                        since_yield = 0
                else:
                    flush_soon()
                if since_yield >= _YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    # ------------------------------------------------------------ pushed

    @property
    def credit(self) -> int:
        """Items that may be sent now."""
        return self._link.connection.send_window(self.stream_id)

    def on_credit(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(n)`` for every grant of ``n`` the remote makes (the credit already
        granted and not yet used is given at once)."""
        self._credit_callbacks.append(callback)
        if self.credit:
            callback(self.credit)

    def try_send(self, item: Payload | bytes | str) -> None:
        """Send one item now.

        Raises:
            LocalProtocolError: the remote has not granted credit for it (wait for
                :meth:`on_credit`, or use :meth:`send`); nothing is buffered.
            StreamCancelledError / ClosedResourceError / ...: our half is over.
        """
        self._check_open()
        conn = self._link.connection
        if not conn.send_window(self.stream_id):
            raise LocalProtocolError(
                f"no credit to send on stream {self.stream_id}: the {self.sent} item(s) the remote granted were all "
                "sent; follow its demand (on_credit / the demand Observable)"
            )
        payload = as_payload(item)
        conn.send_payload(self.stream_id, payload.data, payload.metadata, complete=payload.last)
        self.sent += 1
        self._link.flush_soon()
        if payload.last:
            self._end(None)

    async def send(self, item: Payload | bytes | str) -> None:
        """Send one item once the remote's credit and the transport's room allow.

        Raises:
            StreamCancelledError / ClosedResourceError / ...: our half ended while waiting.
        """
        while not self.credit:
            self._check_open()
            await self._wait_credit()
        if not self._link.writable:
            await self._link.drain()
        self.try_send(item)

    def complete(self) -> None:
        """End our half in order (COMPLETE). Idempotent once over."""
        if not self.done.done() and self._link.connection.can_send(self.stream_id):
            self._link.connection.send_complete(self.stream_id)
            self._link.flush()
        self._end(None)

    def fail(self, error: BaseException) -> None:
        """End the stream with ERROR (only an ApplicationError's text reaches the remote).

        ERROR ends a stream in both directions (Protocol.md "ERROR"): a request-channel's
        ``replies`` end with the same error.
        """
        sent = False
        if not self.done.done():
            code, message = self._error_for(error)
            sent = self._link.connection.send_error(self.stream_id, code, message)
            if sent:
                self._link.flush()
        reason = error if isinstance(error, RxChannelError) else RxChannelError(f"the sender failed: {error!r}")
        self._end(reason)
        if sent and self.replies is not None:
            self.replies.finish(reason)
            self.replies._link.cancel(self.stream_id)  # the peer forgets the stream (nothing more can arrive)

    async def finish(self) -> list[Payload]:
        """Complete our half and return the remote's replies (a receipt) once it ends its own."""
        self.complete()
        return await self.replies.collect() if self.replies is not None else []

    async def aclose(self) -> None:
        """Stop sending: a sink closed before it completed fails the stream (the remote must not
        take a partial upload for a whole one). Idempotent."""
        if not self.done.done():
            self.fail(ClosedResourceError("the sender closed its sink before completing"))
        if self.replies is not None:
            await self.replies.aclose()

    def _check_open(self) -> None:
        if self.done.done():
            error = self.done.exception()
            raise error if error is not None else ClosedResourceError(f"stream {self.stream_id} was completed")

    async def __aenter__(self) -> RemoteSink:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.complete()
        else:
            self.fail(exc)
            if self.replies is not None:
                await self.replies.aclose()
