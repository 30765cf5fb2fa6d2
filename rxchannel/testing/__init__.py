"""Helpers for testing protocol code and users' own handlers.

``transfer(a, b)`` moves frames between two sans-IO connections without sockets;
:mod:`rxchannel.testing.tck` checks publishers and subscribers against the Reactive Streams
rules (it needs pytest, and is imported only when asked for).
"""

from __future__ import annotations

from rxchannel.core import Connection, Event

__all__ = ["LivelockError", "transfer"]


class LivelockError(AssertionError):
    """Two connections kept exchanging frames for more rounds than allowed."""


def transfer(
    a: Connection, b: Connection, *, now: float = 0.0, max_rounds: int = 100
) -> tuple[list[Event], list[Event]]:
    """Move frames between ``a`` and ``b`` until both are quiet; return (a's events, b's events).

    Raises:
        LivelockError: they were still talking after ``max_rounds`` rounds.
    """
    a_events: list[Event] = []
    b_events: list[Event] = []
    for _ in range(max_rounds):
        to_b = a.frames_to_send()
        to_a = b.frames_to_send()
        if not to_a and not to_b:
            a_events += a.events()
            b_events += b.events()
            return a_events, b_events
        for frame in to_b:
            b.receive(frame, now)
        for frame in to_a:
            a.receive(frame, now)
        a_events += a.events()
        b_events += b.events()
    raise LivelockError(f"connections still exchanging frames after {max_rounds} rounds")
