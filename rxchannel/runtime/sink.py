"""Our outbound half of a stream, written item by item: the remote's demand decides what may go.

A :class:`RemoteSink` is the push-driven twin of :class:`~.producer.Producer` (which pulls a
source): the application calls :meth:`RemoteSink.send` (waits for credit and transport
room) or :meth:`RemoteSink.try_send` (refuses without credit: never a silent buffer), and
sees every grant the remote makes (:meth:`RemoteSink.on_credit`), which is the demand an
Rx pipeline follows. A requester gets one from ``Peer.request_sink`` (a request-channel;
``replies`` has the responder's items), a responder from ``Request.outbound``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from rxchannel.core import ClosedResourceError, LocalProtocolError, RxChannelError, StreamCancelledError

from .producer import Outlet
from .stream import RemoteStream
from .values import Payload, as_payload

__all__ = ["RemoteSink"]


class RemoteSink:
    """Items we send on one stream, within the remote's credit.

    Attributes:
        stream_id: the stream.
        replies: for a request-channel we made, the responder's items (else None).
        done: resolves when our half is over (completed, failed, cancelled by the remote,
            or the connection ended; then with the reason as its exception).
    """

    def __init__(
        self,
        outlet: Outlet,
        stream_id: int,
        *,
        on_error: Callable[[BaseException], tuple[int, str]],
        replies: RemoteStream | None = None,
    ):
        """``on_error`` maps a local failure to the ERROR the remote sees (the router's
        ``error_for``: only an ApplicationError's text leaves this side)."""
        self._outlet = outlet
        self.stream_id = stream_id
        self.replies = replies
        self._error_for = on_error
        self._credit_callbacks: list[Callable[[int], object]] = []
        self._waiter: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent = 0
        #: credit the remote granted before anyone watched (replayed to the first on_credit)
        self._granted_so_far = outlet.connection.send_window(stream_id)

    # ------------------------------------------------------------ fed by the runtime

    def credit_granted(self, n: int) -> None:
        """The remote granted ``n`` more (called by the runtime)."""
        self._granted_so_far += n
        for callback in list(self._credit_callbacks):
            callback(n)
        self._wake()

    def stop(self, error: RxChannelError | None = None) -> None:
        """The remote cancelled our half, or the stream or connection ended (called by the runtime)."""
        self._end(error or StreamCancelledError(f"the remote cancelled stream {self.stream_id}: it wants no more"))

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

    # ------------------------------------------------------------ application side

    @property
    def credit(self) -> int:
        """Items that may be sent now."""
        return self._outlet.connection.send_window(self.stream_id)

    def on_credit(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(n)`` for every grant of ``n`` the remote makes (what was granted
        before is given at once)."""
        self._credit_callbacks.append(callback)
        if self._granted_so_far:
            callback(self._granted_so_far)

    def try_send(self, item: Payload | bytes | str) -> None:
        """Send one item now.

        Raises:
            LocalProtocolError: the remote has not granted credit for it (wait for
                :meth:`on_credit`, or use :meth:`send`); nothing is buffered.
            StreamCancelledError / ClosedResourceError / ...: our half is over.
        """
        self._check_open()
        conn = self._outlet.connection
        if not conn.send_window(self.stream_id):
            raise LocalProtocolError(
                f"no credit to send on stream {self.stream_id}: the remote granted {self._granted_so_far} item(s) "
                f"and {self.sent} were sent; follow its demand (on_credit / the demand Observable)"
            )
        payload = as_payload(item)
        conn.send_payload(self.stream_id, payload.data, payload.metadata, complete=payload.last)
        self.sent += 1
        self._outlet.flush_soon()
        if payload.last:
            self._end(None)

    async def send(self, item: Payload | bytes | str) -> None:
        """Send one item once the remote's credit and the transport's room allow.

        Raises:
            StreamCancelledError / ClosedResourceError / ...: our half ended while waiting.
        """
        while not self.credit:
            self._check_open()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if not self._outlet.writable:
            await self._outlet.drain()
        self.try_send(item)

    def complete(self) -> None:
        """End our half in order (COMPLETE). Idempotent once over."""
        if not self.done.done() and self._outlet.connection.can_send(self.stream_id):
            self._outlet.connection.send_complete(self.stream_id)
            self._outlet.flush()
        self._end(None)

    def fail(self, error: BaseException) -> None:
        """End the stream with ERROR (only an ApplicationError's text reaches the remote).

        ERROR ends a stream in both directions (Protocol.md "ERROR"): a request-channel's
        ``replies`` end with the same error.
        """
        sent = False
        if not self.done.done():
            code, message = self._error_for(error)
            sent = self._outlet.connection.send_error(self.stream_id, code, message)
            if sent:
                self._outlet.flush()
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
