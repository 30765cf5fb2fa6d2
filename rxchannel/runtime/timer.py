"""The timers of a :class:`~.peer.Peer`: its connection's next deadline (keepalive,
lifetime, a resumable session's wait), and the watchdog of a peer that stops reading."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rxchannel.core import Connection, ConnectionLostError, RxChannelError
from rxchannel.transports import Transport

__all__ = ["Deadline", "stall_watchdog"]


class Deadline:
    """One timer for the connection's next deadline; moved earlier when the deadline
    moves earlier (a SETUP that asks for a shorter lifetime), never re-armed needlessly."""

    __slots__ = ("_at", "_conn", "_handle", "_loop", "_then")

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop, then: Callable[[], None]):
        """``then`` runs once the connection has handled a deadline (the peer sends and dispatches)."""
        self._conn = conn
        self._loop = loop
        self._then = then
        self._handle: asyncio.Handle | None = None
        self._at = 0.0

    def arm(self) -> None:
        deadline = self._conn.get_timer()
        if deadline is None:
            return
        if self._handle is not None:
            if self._at <= deadline:
                return
            self._handle.cancel()
        # the deadline is kept here: uvloop's call_at returns a plain Handle, without when(),
        # for a deadline already past (which the timer of a busy loop's connection can be)
        self._at = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._conn.handle_timer(self._loop.time())
        self._then()
        self.arm()


async def stall_watchdog(transport: Transport, conn: Connection, then: Callable[[], None]) -> None:
    """Runs while the send queue is over the high-water mark; drops a peer that lets it stay
    there (then ``then``: the peer dispatches the connection's end)."""
    limits = transport.limits
    try:
        async with asyncio.timeout(limits.stall_timeout):
            await transport.drain()
    except TimeoutError:
        queued = transport.buffered_amount
        conn.connection_lost(
            ConnectionLostError(
                f"the peer stopped reading: {queued >> 10} KiB waited for it over the high-water mark "
                f"for {limits.stall_timeout:.0f} s (TransportLimits.stall_timeout); dropped"
            )
        )
        then()
    except RxChannelError:
        pass  # the transport ended anyway
