"""balance(): one demand source shared by its subscribers, each item to the first with demand for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable

from rxchannel.reactive.shared import balance

from ._demand import demand_source

T = TypeVar("T")


def balance_() -> Callable[[Observable[T]], Observable[T]]:
    def apply(source: Observable[T]) -> Observable[T]:
        return balance(demand_source(source, "balance"))

    return apply
