"""share_demand(max_lag): one demand source broadcast to every subscriber, read once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable

from rxchannel.fanout.broadcast import check_broadcast
from rxchannel.reactive.shared import share_demand

from ._demand import demand_source

T = TypeVar("T")


def share_demand_(
    max_lag: int, *, patience: float = 1.0, join_window: float = 0.0
) -> Callable[[Observable[T]], Observable[T]]:
    check_broadcast(max_lag, patience, join_window)  # checked now, not at subscription

    def apply(source: Observable[T]) -> Observable[T]:
        return share_demand(demand_source(source, "share_demand"), max_lag, patience=patience, join_window=join_window)

    return apply
