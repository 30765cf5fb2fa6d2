"""Replenish policies: *when* an :class:`~._credit.InboundDemand` grants more.

The same policies back the async-iteration API (``window=``), the ReactiveX operators
(``windowed``, ``limit_rate``, ``adaptive``, ``request_n``) and the browser client (which
is checked against vectors generated from these classes).
"""

from __future__ import annotations

from typing import TypeAlias

from ._credit import InboundDemand, ReplenishPolicy

__all__ = ["DEFAULT_WINDOW", "Adaptive", "LimitRate", "Manual", "Window", "WindowSpec", "policy_for"]

#: Items in flight on a stream when no window is given.
DEFAULT_WINDOW = 16

#: What a ``window=`` argument accepts everywhere: an item count, ``"auto"`` (:class:`Adaptive`),
#: a replenish policy, or None (:data:`DEFAULT_WINDOW`); :func:`policy_for` turns it into a policy.
WindowSpec: TypeAlias = int | str | ReplenishPolicy | None


class Manual:
    """No automatic replenishment: the application calls ``request(n)`` itself."""

    def __init__(self, initial: int = 0):
        if isinstance(initial, bool) or not isinstance(initial, int) or initial < 0:
            raise ValueError(f"Manual(initial) needs a non-negative integer, got {initial!r}")
        self._initial = initial

    def initial(self) -> int:
        return self._initial

    def demand(self, state: InboundDemand, now: float) -> int:
        return 0

    def quiet(self) -> int:
        return -1  # never grants by itself

    def __repr__(self) -> str:
        return f"Manual({self._initial})"


class Window:
    """Keep at most ``size`` items in flight (granted and not yet acknowledged).

    More is requested once ``refill`` slots are free, so that a window of 64 sends one
    REQUEST_N per ``refill`` items rather than one per item. The default refill is a
    quarter of the window (h2 waits for half): topping up earlier keeps the pipe full
    across the round trip, which measured 1.5-2x more items/s for small items over TCP
    loopback (``benchmarks/tcp_throughput.py``). ``Window(1)`` is stop-and-wait.
    """

    def __init__(self, size: int, refill: int | None = None):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"window size must be a positive integer, got {size!r}")
        if refill is None:
            refill = max(1, size // 4)
        if not 1 <= refill <= size:
            raise ValueError(f"refill must be in 1..{size}, got {refill}")
        self.size = size
        self.refill = refill

    def initial(self) -> int:
        return self.size

    def demand(self, state: InboundDemand, now: float) -> int:
        free = self.size - state.in_flight
        return free if free >= self.refill else 0

    def quiet(self) -> int:
        return self.size - self.refill  # more in flight than this: fewer than `refill` slots are free

    def __repr__(self) -> str:
        return f"Window(size={self.size}, refill={self.refill})"


class LimitRate(Window):
    """Request ``high`` items, then top up to ``high`` whenever only ``low`` remain in flight
    (Reactor's ``limitRate(high, low)``: a :class:`Window` of ``high`` refilled by ``high - low``)."""

    def __init__(self, high: int, low: int):
        if isinstance(high, bool) or not isinstance(high, int) or not isinstance(low, int) or not 0 <= low < high:
            raise ValueError(f"LimitRate needs integers 0 <= low < high, got high={high!r}, low={low!r}")
        super().__init__(high, refill=high - low)

    @property
    def high(self) -> int:
        return self.size

    @property
    def low(self) -> int:
        return self.size - self.refill

    def __repr__(self) -> str:
        return f"LimitRate(high={self.high}, low={self.low})"


class Adaptive:
    """A window tuned from the measured round-trip time and consumption rate.

    The window aims at one and a half bandwidth-delay products as the consumer sees
    them: ``1.5 x rate x rtt``, where ``rate`` is items acknowledged per second over the
    last round trip and ``rtt`` the measured minimum (see :class:`InboundDemand`). While
    the window is what limits throughput, the measured rate is ``window / rtt``, so the
    target grows the window by half each round trip until the rate stops growing (the
    path or the consumer is now the bottleneck); when the consumer slows down, the rate
    falls and the window follows it down. No latency needs to be configured.

    Args:
        initial: the window before anything is measured.
        min_window, max_window: bounds in items.
        max_bytes: memory cap: the window never exceeds ``max_bytes`` divided by the
            average item size seen so far.
    """

    def __init__(self, initial: int = 4, *, min_window: int = 1, max_window: int = 1 << 16, max_bytes: int = 64 << 20):
        if not 1 <= min_window <= initial <= max_window or max_bytes <= 0:
            raise ValueError("need 1 <= min_window <= initial <= max_window and max_bytes > 0")
        self.window = initial
        self.min_window = min_window
        self.max_window = max_window
        self.max_bytes = max_bytes
        self.rate: float | None = None
        self._mark: tuple[float, int] | None = None

    def initial(self) -> int:
        return self.window

    def quiet(self) -> int:
        return 1 << 62  # it measures the rate on every acknowledgement: always ask

    def demand(self, state: InboundDemand, now: float) -> int:
        self._measure(state, now)
        free = self.window - state.in_flight
        return free if free >= max(1, self.window // 4) else 0

    def _measure(self, state: InboundDemand, now: float) -> None:
        if self._mark is None:
            self._mark = (now, state.acked_total)
            return
        since, acked_then = self._mark
        rtt = state.rtt if state.rtt else 0.01
        elapsed = now - since
        acked = state.acked_total - acked_then
        if elapsed < max(rtt, 0.001) or acked < 2:
            return
        self._mark = (now, state.acked_total)
        sample = acked / elapsed
        # grow at once, shrink gently: one slow interval must not collapse the window
        self.rate = sample if self.rate is None or sample > self.rate else 0.5 * self.rate + 0.5 * sample
        target = int(1.5 * self.rate * rtt) + 1
        cap = self.max_window
        if state.received_total:
            average = max(1, state.received_bytes // state.received_total)
            cap = min(cap, max(self.min_window, self.max_bytes // average))
        self.window = max(self.min_window, min(cap, target))

    def __repr__(self) -> str:
        return f"Adaptive(window={self.window}, rate={self.rate})"


def policy_for(window: WindowSpec) -> ReplenishPolicy:
    """A policy from a window size, ``"auto"`` (:class:`Adaptive`), a policy, or None (the default window).

    Raises:
        ValueError: anything else, saying what is accepted.
    """
    if window is None:
        return Window(DEFAULT_WINDOW)
    if window == "auto":
        return Adaptive()
    if isinstance(window, int) and not isinstance(window, bool):
        return Window(window)
    if hasattr(window, "initial") and hasattr(window, "demand"):
        return window  # type: ignore[return-value]
    raise ValueError(f"window must be a positive number of items, 'auto' or a policy, got {window!r}")
