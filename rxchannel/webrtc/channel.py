"""WebRTC DataChannel transport, on any stack (:mod:`.stack`): one RSocket frame per binary message.

Sending waits on ``bufferedamountlow`` (``bufferedAmountLowThreshold`` = the low-water
mark), so the stack's SCTP queue never holds more than the high-water mark: a fast sender
cannot queue a whole file inside the peer connection. Only ordered, reliable channels are
accepted (RSocket needs in-order, lossless frames), and frames are limited to the
``a=max-message-size`` the remote side advertised (the core fragments larger items).

A DataChannel has no receive-side flow control that an application can apply (a stack
delivers every message it receives): what bounds the receiver's memory is RSocket's
credit, which limits how many items the peer may send.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

from rxchannel.core import RemoteProtocolError
from rxchannel.transports import InboxTransport, TransportLimits
from rxchannel.transports._base import lost

from .offers import MIN_MESSAGE_SIZE
from .stack import Channel, PeerConnection, path_of

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "DataChannelTransport", "remote_max_message_size"]

#: What RFC 8841 says to assume when the remote SDP has no ``a=max-message-size``.
DEFAULT_MAX_MESSAGE_SIZE = 65536
#: seconds an orderly close waits for queued messages to leave and the stream reset to finish
CLOSE_TIMEOUT = 2.0
_MAX_MESSAGE_SIZE = re.compile(r"^a=max-message-size:(\d+)", re.MULTILINE)


def remote_max_message_size(pc: PeerConnection) -> int:
    """The largest message the remote side accepts, read from its SDP (0 there means no limit)."""
    sdp = pc.remote_sdp
    match = _MAX_MESSAGE_SIZE.search(sdp) if sdp is not None else None
    if match is None:
        return DEFAULT_MAX_MESSAGE_SIZE
    value = int(match.group(1))
    return value if value > 0 else 16 * 1024 * 1024


class DataChannelTransport(InboxTransport):
    """A DataChannel carrying RSocket frames.

    Build it in the very callback that hands over the channel (``createDataChannel``'s
    return, or the peer connection's ``datachannel`` event), before anything is awaited:
    it listens from then on, so a message the peer sends the moment the channel opens
    waits in the inbox (a stack drops a message nobody listens to, and a browser sends its
    SETUP in the same SCTP packet as the channel's OPEN). Once the channel is open, call
    :meth:`opened` before writing.

    Args:
        channel: an ordered, reliable channel, open or not yet.
        pc: the peer connection it belongs to; this transport owns it and closes it.

    Raises:
        ValueError: the channel is not ordered and reliable (the caller still owns ``pc``
            then, and must close it).
    """

    eof_message = "the peer closed the DataChannel"

    def __init__(self, channel: Channel, pc: PeerConnection, limits: TransportLimits | None = None):
        super().__init__(limits)
        if not channel.ordered or channel.maxRetransmits is not None or channel.maxPacketLifeTime is not None:
            raise ValueError("RSocket needs an ordered, reliable DataChannel (no maxRetransmits/maxPacketLifeTime)")
        #: what the peer accepts per message; known for sure once the remote description is set (:meth:`opened`)
        self.max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        self.channel = channel
        self.pc = pc
        self.stack = pc.stack
        self._closing: asyncio.Future[None] | None = None
        #: the amount last read from the stack, and the bytes written since (see :attr:`writable`)
        self._seen = self._unseen = 0
        channel.bufferedAmountLowThreshold = self.limits.low_water
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._wake_drain)
        channel.on("close", self._on_close)
        pc.on_state(self._on_state)

    def opened(self) -> None:
        """The channel is open: read the largest message the peer accepts from its SDP.

        Raises:
            ValueError: the peer's ``a=max-message-size`` is below
                :data:`~.offers.MIN_MESSAGE_SIZE` (the caller still owns ``pc``, and must close it).
        """
        self.max_message_size = remote_max_message_size(self.pc)
        self.path = path_of(self.pc)
        if self.max_message_size < MIN_MESSAGE_SIZE:
            raise ValueError(
                f"the peer's a=max-message-size:{self.max_message_size} is below {MIN_MESSAGE_SIZE}, "
                "the smallest rxchannel accepts"
            )

    @property
    def buffered_amount(self) -> int:
        amount = int(self.channel.bufferedAmount)
        self._seen, self._unseen = amount, 0
        return amount

    @property
    def writable(self) -> bool:
        """Under the high-water mark, asked of the stack only when it might not be.

        The queue grows only by what we write and otherwise shrinks, so the last amount read
        plus the bytes written since is a bound; while the bound is under the mark the answer
        is known. Reading the amount is a blocking hop to libwebrtc's network thread
        (~0.15 ms): without the bound a hub paid it twice per 64 KiB chunk, a worker once per
        batch it read (``benchmarks/paths.py``)."""
        if self._seen + self._unseen < self.limits.high_water:
            return True
        return self.buffered_amount < self.limits.high_water

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str):
            self._set_error(
                RemoteProtocolError("the peer sent a text message; RSocket over a DataChannel is binary only")
            )
            self._wake()
            self._close_pc()
            return
        if self._inbox_bytes + len(message) > self.limits.max_unread:
            # aiortc cannot be told to stop reading: a peer that sends what nobody asked for is dropped
            unread = (self._inbox_bytes + len(message)) >> 20
            self._set_error(
                RemoteProtocolError(
                    f"the peer sent {unread} MiB that were not read yet (limit {self.limits.max_unread >> 20} MiB): "
                    "it sends without waiting for credit"
                )
            )
            self._wake()
            self._close_pc()
            return
        self._deliver((message,))

    def _on_close(self) -> None:
        # the channel closed: orderly if SCTP is still up (the peer reset just this stream),
        # broken if the association went down under it (the peer aborted or vanished)
        if self.pc.transport_closed() and not self._closed:
            self._set_error(lost("the WebRTC peer connection closed under the DataChannel"))
        self._eof = True
        self._wake()
        self._wake_drain()

    def _on_state(self) -> None:
        if self.pc.connection_state == "failed" and not self._closed:
            self._set_error(lost("the WebRTC connection failed (ICE or DTLS): the peer is unreachable"))
            self._wake()

    def _write(self, frames: list[bytes]) -> None:
        if self.channel.readyState != "open":
            raise lost(f"the DataChannel is {self.channel.readyState}")
        send = self.channel.send
        for frame in frames:
            send(frame)
            self._unseen += len(frame)

    def _close_pc(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.pc.close())  # kept referenced until done

    async def _until(self, event: str, done: Callable[[], bool]) -> None:
        """Wait (at most CLOSE_TIMEOUT) until ``done()``, re-checking whenever the channel emits ``event``."""
        if done():
            return
        reached = asyncio.get_running_loop().create_future()

        def check(*_: object) -> None:
            if done() and not reached.done():
                reached.set_result(None)

        self.channel.on(event, check)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await reached
        finally:
            self.channel.remove_listener(event, check)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._wake_drain()
        if self.channel.readyState == "open":
            # let queued messages leave (bounded: the queue is at most high-water), then reset the
            # stream and let the reset reach the peer before SCTP shuts down: it sees an orderly end
            self.channel.bufferedAmountLowThreshold = 0
            await self._until("bufferedamountlow", lambda: self.channel.bufferedAmount == 0)
            self.channel.close()
            await self._until("close", lambda: self.channel.readyState == "closed")
        if self._closing is None:
            await self.pc.close()
        else:
            await self._closing

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._wake_drain()
        self._close_pc()
