"""What a listener admits: how many connections, from one address and in all, how long an
unproven one may wait, and what half-sent messages may hold. The mechanism that applies
them (eviction of the least proven, deadlines that shrink under pressure, throttled logs)
is :mod:`.admission`, shared with the answerer, the rendezvous and the hub."""

from __future__ import annotations

from dataclasses import dataclass

from .admission import Admission, ThrottledLog

__all__ = ["Admission", "ListenLimits", "ThrottledLog"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenLimits:
    """What one listener admits.

    Attributes:
        max_connections: connections at once. When they are all taken, a newcomer evicts
            the least-proven one (:mod:`.admission`); it is refused only when every one has
            proven itself (a SETUP accepted) and the ``headroom`` is taken too.
        max_per_address: connections at once from one IP address (the same, per address).
        headroom: places over ``max_connections`` for newcomers when every connection is
            proven; once a newcomer proves itself, the oldest idle one makes room for it.
            None: an eighth of ``max_connections`` (at least 4).
        header_timeout: seconds a new connection may stay silent before its first complete
            request (HTTP: request line and headers, slow-loris; TCP: its SETUP); nginx's
            client_header_timeout is 60 s. It shrinks as the cap fills (``pressure_floor``).
        setup_timeout: seconds a connection that asked (an HTTP request, a WebSocket
            upgrade) may wait without proving itself with a SETUP; shrinks the same way.
        pressure_floor: what those deadlines shrink to when the cap is 90 % full (they are
            whole up to half full, geometrically shorter in between).
        keepalive_timeout: seconds an idle HTTP connection is kept between requests.
        body_timeout: seconds a request body (an offer, a report) may take to arrive.
        max_unfinished: bytes that the messages not yet received whole (a WebSocket message
            or a TCP frame half-sent) may hold on all connections of the listener together;
            past it the least-proven sender of the largest stalled one is dropped. One
            message is capped by the transport's ``max_message_size``.
    """

    max_connections: int = 256
    max_per_address: int = 32
    headroom: int | None = None
    header_timeout: float = 60.0
    setup_timeout: float = 60.0
    pressure_floor: float = 2.0
    keepalive_timeout: float = 60.0
    body_timeout: float = 60.0
    max_unfinished: int = 64 << 20

    def __post_init__(self) -> None:
        if self.max_connections <= 0 or self.max_per_address <= 0 or self.max_unfinished <= 0:
            raise ValueError("max_connections, max_per_address and max_unfinished must be positive")
        if self.headroom is not None and self.headroom < 0:
            raise ValueError("headroom must not be negative")
        timeouts = (self.header_timeout, self.setup_timeout, self.keepalive_timeout, self.body_timeout)
        if min(timeouts) <= 0 or self.pressure_floor <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def spare(self) -> int:
        """The headroom in force (see ``headroom``)."""
        return self.headroom if self.headroom is not None else max(4, self.max_connections // 8)

    def admission(self, what: str, log: ThrottledLog, *, silent: str = "sent no request") -> Admission:
        """An :class:`Admission` for this listener's connections under these limits."""
        from .admission import ASKED, SILENT

        return Admission(
            what,
            log,
            limit=self.max_connections,
            per_key=self.max_per_address,
            headroom=self.spare,
            deadlines={SILENT: (self.header_timeout, silent), ASKED: (self.setup_timeout, "sent no SETUP")},
            floor=self.pressure_floor,
            limit_hint=": --max-connections",
        )
