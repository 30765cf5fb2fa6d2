"""The message-transport interface every transport implements (and the conformance suite checks).

A transport carries whole frames: one RSocket frame per message. Sending never blocks
and never refuses for lack of room: it queues, reports how much is queued
(:attr:`Transport.buffered_amount`), and :meth:`Transport.drain` waits until the queue
is back under the low-water mark. The runtime writes control frames at once and holds
back new items while the transport is above its high-water mark: that is flow-control
level 2 of docs/architecture.md, "Flow control: two levels".
"""

from __future__ import annotations

import abc
import asyncio
import errno
import os
import socket
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from rxchannel.core import MAX_FRAME_SIZE, ClosedResourceError, ConnectFailedError, ConnectionLostError, RxChannelError

from ._limits import ListenLimits
from .admission import Ticket

__all__ = [
    "KIND_HEADER",
    "EndOfStream",
    "HostNotFoundError",
    "InboxTransport",
    "Listener",
    "Transport",
    "TransportLimits",
    "TransportOptions",
    "WrongTransportError",
]

#: The HTTP response header naming the kind of hub that answered (``webrtc``, ``ws``, ``tcp``):
#: a worker that dialed the wrong scheme is told which URL to use instead.
KIND_HEADER = "Rxchannel-Transport"


class EndOfStream(RxChannelError):  # noqa: N818 - a clean end, not a failure (trio's EndOfChannel)
    """The peer closed the transport in an orderly way; every message it sent was delivered."""


class WrongTransportError(ConnectionLostError):
    """The address answered, but not as a hub of the URL's kind (``tcp://`` dialed at an
    HTTP hub, ``ws://`` at a TCP hub...). The URL is wrong: running again will not help;
    the message says which URL to use when the hub said what it is."""


class TransportLimits:
    """Bounds of one transport's queues.

    Attributes:
        high_water, low_water: bytes in the send queue at which sending stops (and the
            connection stops reading the peer, whose frames are what we answer), and at
            which it resumes.
        stall_timeout: seconds the send queue may stay over ``high_water`` (the peer is
            not reading) before the connection is dropped.
        max_unread: bytes received and not yet read that a transport which cannot pause
            the peer (a DataChannel: aiortc delivers every message) accepts before it
            drops the connection; transports that can pause (TCP, WebSocket, memory) stop
            reading the socket instead.
    """

    __slots__ = ("high_water", "low_water", "max_unread", "stall_timeout")

    def __init__(
        self,
        high_water: int = 1 << 20,
        low_water: int | None = None,
        *,
        stall_timeout: float = 60.0,
        max_unread: int = 64 << 20,
    ):
        if high_water <= 0:
            raise ValueError("high_water must be positive")
        self.high_water = high_water
        self.low_water = high_water // 4 if low_water is None else low_water
        if not 0 <= self.low_water <= high_water:
            raise ValueError("low_water must be in 0..high_water")
        if stall_timeout <= 0 or max_unread <= 0:
            raise ValueError("stall_timeout and max_unread must be positive")
        self.stall_timeout = stall_timeout
        self.max_unread = max_unread


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    """How to dial or listen, for every kind of transport (each uses what applies to it).

    Attributes:
        limits: high/low water marks of the send queue.
        max_message_size: the largest message (frame) accepted from the peer; more breaks
            the connection before anything is buffered.
        secret: the shared secret that signs HTTP requests to a hub (WebRTC signaling, the
            direct WebSocket of a WebRTC hub): the hub refuses unsigned ones before they
            cost it anything.
        timeout: seconds to wait for a connection to open.
        http_setup: called with the aiohttp application of an HTTP-based listener before it
            starts, to add routes of its own (the hub's worker page).
        listen_limits: what a listener admits (connections in all and per address, HTTP
            timeouts); safe defaults when None.
        webrtc: for ``http://`` hubs, a :class:`rxchannel.webrtc.WebRtcOptions` (ICE servers,
            TURN, ports, the stack, the path to take); None: its defaults.
        reuse_port: listen with ``SO_REUSEPORT``, so that several processes serve one port
            (``rxchannel serve --processes N``; the kernel hands each new connection to one).
        affinity: dialing a hub of several processes: where the last dial landed (its
            ``Rxchannel-Process``), filled in by the dial and sent again by the next one, so
            that a resumed session reaches the process that holds it. One dict per session.
    """

    limits: TransportLimits | None = None
    max_message_size: int = MAX_FRAME_SIZE
    secret: str | None = field(default=None, repr=False)
    timeout: float = 20.0
    http_setup: Callable[[Any], object] | None = field(default=None, compare=False)
    listen_limits: ListenLimits | None = None
    webrtc: Any = None
    reuse_port: bool = False
    affinity: dict[str, str] | None = field(default=None, compare=False)


class Listener(Protocol):
    """An open listening endpoint: where to dial it, and how to stop it."""

    @property
    def url(self) -> str: ...
    @property
    def urls(self) -> list[str]: ...
    async def close(self) -> None: ...


class Transport(abc.ABC):
    """One bidirectional message pipe between two peers."""

    #: frames longer than this are fragmented by the core before they reach :meth:`write`
    max_message_size: int
    limits: TransportLimits
    #: who is at the other end, for logs (``host:port``; a WebRTC peer: its signaling address)
    remote: str = "?"
    #: the path the bytes take, as the CLI reports it: ``direct`` (TCP, WebSocket, memory), or
    #: for WebRTC ``webrtc-host``, ``webrtc-srflx`` (through a NAT), ``webrtc-relay`` (TURN)
    path: str = "direct"
    #: the WebRTC stack under the transport (``aiortc``, ``native``), None for the others
    stack: str | None = None

    def __init__(self, limits: TransportLimits | None = None) -> None:
        self.limits = limits or TransportLimits()
        self._closed = False
        self._error: RxChannelError | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        #: the places this connection holds in admissions (its listener's, its server's):
        #: :meth:`advance` raises them as it proves itself (:mod:`.admission`)
        self.tickets: list[Ticket] = []

    def advance(self, rank: int, idle: Callable[[], bool] | None = None) -> None:
        """The connection proved itself up to ``rank`` (a SETUP accepted: ``PROVEN``);
        ``idle`` then says when it may make room for a newer proven one."""
        for ticket in self.tickets:
            if idle is not None:
                ticket.idle = idle
            ticket.advance(rank)

    @property
    @abc.abstractmethod
    def buffered_amount(self) -> int:
        """Bytes queued locally and not yet handed to the network."""

    @property
    def writable(self) -> bool:
        """True while the send queue is under the high-water mark."""
        return self.buffered_amount < self.limits.high_water

    @abc.abstractmethod
    def _write(self, frames: list[bytes]) -> None: ...

    def write(self, frames: list[bytes]) -> None:
        """Queue frames for sending, in order. Never blocks.

        Raises:
            ClosedResourceError: this side closed the transport.
            ConnectionLostError: the transport broke.
            ValueError: a frame is larger than :attr:`max_message_size`.
        """
        self._check_usable()
        if frames and max(map(len, frames)) > self.max_message_size:
            size = max(map(len, frames))
            raise ValueError(f"a {size}-byte message exceeds this transport's maximum of {self.max_message_size}")
        self._write(frames)

    async def drain(self) -> None:
        """Wait until :attr:`buffered_amount` is at or under the low-water mark.

        Raises:
            ClosedResourceError / ConnectionLostError: as for :meth:`write`.
        """
        while True:
            self._check_usable()
            if self.buffered_amount <= self.limits.low_water:
                return
            if self._drain_waiter is None or self._drain_waiter.done():
                self._drain_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drain_waiter)

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @abc.abstractmethod
    async def receive(self) -> list[bytes]:
        """The next messages (at least one), in order.

        Raises:
            EndOfStream: the peer closed; nothing more will come.
            ConnectionLostError: the transport broke.
            ClosedResourceError: this side closed the transport.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close in an orderly way: queued messages are still delivered. Idempotent."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the transport at once (the peer sees it break). Idempotent."""

    def _first_close(self) -> bool:
        """Mark the transport closed; True only the first time (close and abort are idempotent)."""
        if self._closed:
            return False
        self._closed = True
        return True

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ClosedResourceError("the transport was closed by this side")

    def _set_error(self, error: RxChannelError) -> None:
        if self._error is None and not self._closed:
            self._error = error
        self._wake_drain()


class InboxTransport(Transport):
    """A transport whose messages arrive by callback: they wait in an inbox for :meth:`receive`."""

    #: what :class:`EndOfStream` says once the peer has closed and the inbox is empty
    eof_message = "the peer closed the transport"

    def __init__(self, limits: TransportLimits | None = None) -> None:
        super().__init__(limits)
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def unread(self) -> int:
        """Messages received and not yet taken by :meth:`receive`."""
        return len(self._inbox)

    def _deliver(self, messages: Collection[bytes]) -> None:
        self._inbox.extend(messages)
        self._inbox_bytes += sum(map(len, messages))
        self._wake()

    def _deliver_eof(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _after_receive(self) -> None:
        """Called when the inbox was emptied (room freed): resume reading, pump a link ..."""

    async def receive(self) -> list[bytes]:
        while not self._inbox:
            self._check_usable()
            if self._eof:
                raise EndOfStream(self.eof_message)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        batch = list(self._inbox)
        self._inbox.clear()
        self._inbox_bytes = 0
        self._after_receive()
        return batch


class HostNotFoundError(ConnectFailedError):
    """The URL's host name does not resolve: no address to dial. The URL is wrong (or the
    name service is down): dialing again as it is will not help."""


def unreachable(url: str, exc: BaseException, what: str = "the hub") -> ConnectionError:
    """The error for a hub (or ``what`` else) that could not be reached (``exc``: the socket's or
    aiohttp's error), with the advice that fits the cause.

    ``ConnectionRefusedError``: the host answered and nothing listens there;
    :class:`HostNotFoundError`: the host name does not resolve. Callers may give up at once
    on either (a re-dial or another path to the same address cannot do better).
    """
    cause = getattr(exc, "os_error", exc)
    number = getattr(cause, "errno", None)
    host = urlsplit(url).hostname or url
    error: ConnectionError
    if isinstance(cause, socket.gaierror):  # the resolver's own codes are negative: not an errno
        why = (cause.strerror or "the name does not resolve").lower()
        error = HostNotFoundError(f"cannot reach {url}: unknown host {host!r} ({why}): check the host name in the URL")
    elif number == errno.ECONNREFUSED:
        error = ConnectionRefusedError(f"cannot reach {url}: connection refused (is {what} running at this address?)")
    elif number in (errno.EPERM, errno.EACCES):
        # connect() refused on this machine before anything was sent: a firewall rule (iptables/nftables
        # OUTPUT) or a sandbox, not the remote side
        error = ConnectionError(
            f"cannot reach {url}: this machine does not allow connecting to {host} "
            "(a local firewall or sandbox blocked it before anything was sent)"
        )
    else:
        reason = os.strerror(number) if isinstance(number, int) and number > 0 else (str(exc) or type(exc).__name__)
        reason = f"{reason[:1].lower()}{reason[1:]}"
        error = ConnectionError(f"cannot reach {url}: {reason} (is {what} running at this address?)")
    error.__cause__ = exc
    return error


def lost(message: str, cause: BaseException | None = None) -> ConnectionLostError:
    err = ConnectionLostError(message)
    err.__cause__ = cause
    return err
