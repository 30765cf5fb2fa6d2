"""In-process transport pairs, with optional latency and bandwidth shaping.

Each direction is a link: the sender's queue (what :attr:`buffered_amount` reports), the
wire (serialised at ``bandwidth`` bytes/s, arriving ``latency`` seconds later) and the
receiver's buffer (``receive_buffer`` bytes, counting what is on the wire, like a TCP
window). When the receiver stops reading, its buffer fills, the sender's queue grows and
:meth:`drain` blocks: backpressure behaves as on a real network.
"""

from __future__ import annotations

import asyncio
from collections import deque

from rxchannel.core import MAX_FRAME_SIZE

from ._base import InboxTransport, TransportLimits, lost

__all__ = ["MemoryTransport", "memory_pair"]


class _Link:
    """One direction: ``src`` writes, ``dst`` receives."""

    def __init__(self, latency: float, bandwidth: float | None, receive_buffer: int):
        self.latency = latency
        self.bandwidth = bandwidth
        self.receive_buffer = receive_buffer
        self.shaped = latency > 0 or bandwidth is not None
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.inflight: deque[tuple[float, bytes]] = deque()
        self.inflight_bytes = 0
        self.link_free = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.eof = False  # src closed in order: deliver what is queued, then end
        self.src: MemoryTransport
        self.dst: MemoryTransport

    def _room(self) -> bool:
        used = self.inflight_bytes + self.dst._inbox_bytes
        return used == 0 or used + len(self.pending[0]) <= self.receive_buffer

    def pump(self) -> None:
        dst = self.dst
        if dst._error is not None or dst._closed:
            self.drop()  # nobody will ever read it
            self.src._wake_drain()
            return
        moved = False
        if not self.shaped:
            used, pending, limit = dst._inbox_bytes, self.pending, self.receive_buffer
            if used + self.pending_bytes <= limit:  # all of it fits: the usual case
                batch, taken = list(pending), self.pending_bytes
                pending.clear()
            else:
                batch, taken = [], 0
                while pending and (used + taken == 0 or used + taken + len(pending[0]) <= limit):
                    msg = pending.popleft()
                    taken += len(msg)
                    batch.append(msg)
            self.pending_bytes -= taken
            if batch:
                dst._deliver(batch)  # one batch per pump: one wake-up of the reader
                moved = True
        else:
            loop = asyncio.get_running_loop()
            now = loop.time()
            while self.inflight and self.inflight[0][0] <= now:
                _, msg = self.inflight.popleft()
                self.inflight_bytes -= len(msg)
                dst._deliver((msg,))
            # serialise onto the wire while the link is free (1 ms of slack batches timers)
            while self.pending and self.link_free <= now + 0.001 and self._room():
                msg = self.pending.popleft()
                self.pending_bytes -= len(msg)
                start = max(now, self.link_free)
                self.link_free = start + (len(msg) / self.bandwidth if self.bandwidth else 0.0)
                self.inflight.append((self.link_free + self.latency, msg))
                self.inflight_bytes += len(msg)
                moved = True
            self._schedule(loop, now)
        if moved and self.pending_bytes <= self.src.limits.low_water:
            self.src._wake_drain()
        if self.eof and not self.pending and not self.inflight:
            dst._deliver_eof()

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        when = []
        if self.inflight:
            when.append(self.inflight[0][0])
        if self.pending and self._room():
            when.append(self.link_free)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if when:
            self.timer = loop.call_at(max(min(when), now), self.pump)

    def drop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending.clear()
        self.inflight.clear()
        self.pending_bytes = self.inflight_bytes = 0


class MemoryTransport(InboxTransport):
    """One end of an in-process pair; make pairs with :func:`memory_pair`."""

    eof_message = "the peer closed the in-memory transport"

    def __init__(self, limits: TransportLimits | None, max_message_size: int):
        super().__init__(limits)
        self.max_message_size = max_message_size
        self._out: _Link
        self._in: _Link

    @property
    def buffered_amount(self) -> int:
        return self._out.pending_bytes

    def _write(self, frames: list[bytes]) -> None:
        link = self._out
        link.pending.extend(frames)
        link.pending_bytes += sum(map(len, frames))
        link.pump()

    def _after_receive(self) -> None:
        self._in.pump()  # room freed: the peer may send more

    async def close(self) -> None:
        if not self._first_close():
            return
        self._out.eof = True
        self._out.pump()
        self._in.drop()
        self._wake()
        self._wake_drain()

    def abort(self) -> None:
        if not self._first_close():
            return
        self._out.drop()
        self._in.drop()
        self._out.dst._set_error(lost("the in-memory peer aborted the connection"))
        self._out.dst._wake()
        self._wake()
        self._wake_drain()


def memory_pair(
    *,
    latency: float = 0.0,
    bandwidth: float | None = None,
    receive_buffer: int = 4 << 20,
    limits: TransportLimits | None = None,
    max_message_size: int = MAX_FRAME_SIZE,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-process transports.

    Args:
        latency: one-way delay in seconds.
        bandwidth: bytes per second per direction, or None for no limit.
        receive_buffer: bytes a receiver holds (on the wire + unread) before the
            sender's queue starts to grow.
        limits: high/low water marks of each sender's queue.
        max_message_size: largest message either side accepts.
    """
    if latency < 0 or (bandwidth is not None and bandwidth <= 0):
        raise ValueError("latency must be >= 0 and bandwidth > 0 (or None)")
    a = MemoryTransport(limits, max_message_size)
    b = MemoryTransport(limits, max_message_size)
    ab, ba = _Link(latency, bandwidth, receive_buffer), _Link(latency, bandwidth, receive_buffer)
    ab.src, ab.dst, ba.src, ba.dst = a, b, b, a
    a._out, a._in, b._out, b._in = ab, ba, ba, ab
    return a, b
