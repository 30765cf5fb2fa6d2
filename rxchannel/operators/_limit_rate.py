"""limit_rate(high, low): request in batches, fewer REQUEST_N frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable

from rxchannel.core import LimitRate

from ._demand import demand_source

T = TypeVar("T")


def limit_rate_(
    high: int, low: int | None = None, *, acks: Observable[int] | None = None
) -> Callable[[Observable[T]], Observable[T]]:
    low_mark = high // 4 if low is None else low
    LimitRate(high, low_mark)  # check the arguments now

    def apply(source: Observable[T]) -> Observable[T]:
        return demand_source(source, "limit_rate").with_demand(
            policy=lambda: LimitRate(high, low_mark), manual=None, acks=acks
        )

    return apply
