"""adaptive(): a window tuned from measured round-trip time and consumption rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable

from rxchannel.core import Adaptive

from ._demand import demand_source

T = TypeVar("T")


def adaptive_(
    initial: int = 4,
    *,
    max_window: int = 1 << 16,
    max_bytes: int = 64 << 20,
    acks: Observable[int] | None = None,
) -> Callable[[Observable[T]], Observable[T]]:
    Adaptive(initial, max_window=max_window, max_bytes=max_bytes)  # check the arguments now

    def apply(source: Observable[T]) -> Observable[T]:
        return demand_source(source, "adaptive").with_demand(
            policy=lambda: Adaptive(initial, max_window=max_window, max_bytes=max_bytes), manual=None, acks=acks
        )

    return apply
