"""Admission limits for listeners: how many connections, from one address and in all, and
rate-limited logging of what was refused (an attack must not become a log flood)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["Admission", "ListenLimits", "ThrottledLog"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenLimits:
    """What one listener admits.

    Attributes:
        max_connections: connections at once; more are closed as they arrive.
        max_per_address: connections at once from one IP address.
        header_timeout: seconds an HTTP connection may take to send its first complete
            request line and headers (slow-loris); nginx's client_header_timeout is 60 s.
        keepalive_timeout: seconds an idle HTTP connection is kept between requests.
        body_timeout: seconds a request body (an offer, a report) may take to arrive.
    """

    max_connections: int = 256
    max_per_address: int = 32
    header_timeout: float = 60.0
    keepalive_timeout: float = 60.0
    body_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.max_connections <= 0 or self.max_per_address <= 0:
            raise ValueError("max_connections and max_per_address must be positive")
        if min(self.header_timeout, self.keepalive_timeout, self.body_timeout) <= 0:
            raise ValueError("timeouts must be positive")


class ThrottledLog:
    """Logs at most ``burst`` messages per ``interval`` seconds, then says how many it held back."""

    def __init__(self, logger: logging.Logger, *, burst: int = 5, interval: float = 10.0):
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._window_start = 0.0
        self._count = 0
        self._held_back = 0

    def warning(self, message: str, *args: object, **kwargs: Any) -> None:
        """``logger.warning(message, *args, **kwargs)`` unless this window's burst is spent."""
        now = time.monotonic()
        if now - self._window_start >= self.interval:
            if self._held_back:
                self.logger.warning("... and %d more like it in the last %.0f s", self._held_back, self.interval)
            self._window_start, self._count, self._held_back = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.logger.warning(message, *args, **kwargs)
        else:
            self._held_back += 1


class Admission:
    """Counts open connections by address and says whether one more may come in."""

    def __init__(self, limits: ListenLimits, what: str, log: ThrottledLog):
        self.limits = limits
        self.what = what
        self.log = log
        self.by_address: Counter[str] = Counter()
        self.total = 0
        self.refused = 0
        #: why the last refused connection was refused (to tell its peer)
        self.last_refusal = ""

    def admit(self, address: str | None) -> bool:
        """Count a new connection in, or refuse it (and log why, throttled; see :attr:`last_refusal`)."""
        key = address or "?"
        if self.total >= self.limits.max_connections:
            reason = f"{self.total} {self.what} open (limit {self.limits.max_connections}: --max-connections)"
        elif self.by_address[key] >= self.limits.max_per_address:
            reason = (
                f"{self.by_address[key]} {self.what} open from {key} (limit {self.limits.max_per_address} per address)"
            )
        else:
            self.total += 1
            self.by_address[key] += 1
            return True
        self.refused += 1
        self.last_refusal = reason
        self.log.warning("refused a connection from %s: %s", key, reason)
        return False

    def leave(self, address: str | None) -> None:
        key = address or "?"
        self.total -= 1
        self.by_address[key] -= 1
        if not self.by_address[key]:
            del self.by_address[key]
