"""on_backpressure_buffer / _drop / _latest: a hot Observable becomes a demand source."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable

from rxchannel.reactive.local import check_overflow, from_hot
from rxchannel.reactive.observable import DemandObservable

T = TypeVar("T")


def on_backpressure_buffer_(
    capacity: int, overflow: str = "error", on_drop: Callable[[T], object] | None = None
) -> Callable[[Observable[T]], Observable[T]]:
    check_overflow(capacity, overflow)

    def apply(source: Observable[T]) -> Observable[T]:
        if isinstance(source, DemandObservable):
            raise TypeError("on_backpressure_buffer() is for hot Observables; this one already honours demand")
        return from_hot(source, capacity, overflow, on_drop)

    return apply


def on_backpressure_drop_(on_drop: Callable[[T], object] | None = None) -> Callable[[Observable[T]], Observable[T]]:
    return on_backpressure_buffer_(0, "drop_latest", on_drop)


def on_backpressure_latest_(
    on_drop: Callable[[T], object] | None = None,
) -> Callable[[Observable[T]], Observable[T]]:
    return on_backpressure_buffer_(1, "drop_oldest", on_drop)
