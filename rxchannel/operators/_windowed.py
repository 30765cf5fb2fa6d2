"""windowed(w): keep at most w items granted and not yet consumed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable

from rxchannel.core import Window

from ._demand import demand_source

T = TypeVar("T")


def windowed_(
    size: int, *, refill: int | None = None, acks: Observable[int] | None = None
) -> Callable[[Observable[T]], Observable[T]]:
    Window(size, refill)  # check the arguments now, not at subscription

    def apply(source: Observable[T]) -> Observable[T]:
        return demand_source(source, "windowed").with_demand(
            policy=lambda: Window(size, refill), manual=None, acks=acks
        )

    return apply
