"""What every demand operator shares: find the demand source it configures."""

from __future__ import annotations

from typing import Any

from reactivex import Observable

from rxchannel.reactive.observable import DemandObservable


def demand_source(source: Observable[Any], operator: str) -> DemandObservable[Any]:
    """``source`` as a demand source, or a TypeError that says where ``operator`` belongs."""
    if not isinstance(source, DemandObservable):
        raise TypeError(
            f"{operator}() sets the demand of a remote stream or of an on_backpressure_* operator; "
            f"put it right after one (got {type(source).__name__})"
        )
    return source
