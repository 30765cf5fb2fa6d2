"""Keepalive deadlines (Protocol.md "KEEPALIVE Frame"): when to ping, when the peer is dead.

Time is always an argument: the connection passes ``now`` from its caller.
"""

from __future__ import annotations

__all__ = ["Keepalive"]


class Keepalive:
    """The client sends KEEPALIVE every ``interval`` seconds; either side declares the peer
    dead after ``lifetime`` seconds without any frame from it."""

    __slots__ = ("interval", "last_received", "lifetime", "next_ping")

    def __init__(self, now: float, lifetime: float, interval: float | None):
        self.last_received = now
        self.lifetime = lifetime
        self.interval = interval
        #: when the next KEEPALIVE is due (None: this side does not ping)
        self.next_ping = now + interval if interval is not None else None

    def received(self, now: float) -> None:
        self.last_received = now

    def deadline(self) -> float:
        """When :meth:`due` must next be asked."""
        dead = self.last_received + self.lifetime
        return dead if self.next_ping is None else min(dead, self.next_ping)

    def silence(self, now: float) -> str | None:
        """How long the peer has been silent, said for a message, if that is past the lifetime; else None."""
        silent = now - self.last_received
        if silent < self.lifetime:
            return None
        return f"no frame from the peer for {silent:.1f} s (keepalive limit {self.lifetime:.1f} s)"

    def ping_due(self, now: float) -> bool:
        """True (and the next ping scheduled) when a KEEPALIVE must go out now."""
        if self.next_ping is None or now < self.next_ping:
            return False
        assert self.interval is not None
        self.next_ping = now + self.interval
        return True
