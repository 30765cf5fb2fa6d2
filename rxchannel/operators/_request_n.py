"""request_n(demand): credits only as the demand Observable says."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable

from ._demand import demand_source

T = TypeVar("T")


def request_n_(
    demand: Observable[int], *, acks: Observable[int] | None = None
) -> Callable[[Observable[T]], Observable[T]]:
    if not isinstance(demand, Observable):
        raise TypeError("request_n() takes an Observable of request counts (e.g. a Subject)")

    def apply(source: Observable[T]) -> Observable[T]:
        return demand_source(source, "request_n").with_demand(manual=demand, acks=acks)

    return apply
