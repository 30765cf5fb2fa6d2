"""``observe_on`` that keeps demand: items are consumed when the scheduler has delivered them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.subject import Subject

from ._demand import demand_source

T = TypeVar("T")


def observe_on_(scheduler: abc.SchedulerBase) -> Callable[[Observable[T]], Observable[T]]:
    def apply(source: Observable[T]) -> Observable[T]:
        upstream = demand_source(source, "observe_on")
        if upstream.demand.acks is not None:
            raise TypeError(
                "observe_on acknowledges each item once the scheduler has delivered it; it cannot also take "
                "acks= (acknowledge after observe_on instead, with the demand operator's acks= left out)"
            )

        def subscribe(observer: abc.ObserverBase[T], _scheduler: abc.SchedulerBase | None = None) -> Any:
            acks: Subject[int] = Subject()

            def delivered(item: T) -> None:
                try:
                    observer.on_next(item)
                finally:
                    acks.on_next(1)  # from the scheduler's thread: carried to the stream's loop

            return (
                upstream.with_demand(acks=acks)
                .pipe(ops.observe_on(scheduler))
                .subscribe(delivered, observer.on_error, observer.on_completed)
            )

        return Observable(subscribe)

    return apply
