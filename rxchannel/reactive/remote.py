"""Remote streams as demand Observables: each subscription opens one RSocket stream."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterable, Iterable
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxchannel.core import Manual, ReplenishPolicy
from rxchannel.runtime import Payload, Peer

from .observable import DemandObservable, PullStream

__all__ = ["request_channel", "request_response", "request_stream"]


def request_stream(
    peer: Peer, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None
) -> DemandObservable[Payload]:
    """A remote request-stream as a cold Observable: each subscription opens one stream."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[Payload]:
        window: Any = policy if policy is not None else _manual()
        return peer.request_stream(route, data, info=info, window=window, auto_ack=auto_ack)

    return DemandObservable(opener, description=f"request_stream({route!r})", loop=peer.loop)


def request_channel(
    peer: Peer,
    route: str | None,
    source: AsyncIterable[Any] | Iterable[Any],
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
) -> DemandObservable[Payload]:
    """A remote request-channel: ``source`` (a DemandObservable, iterable or async iterable)
    goes out as the responder grants credit; the Observable emits the responder's items."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[Payload]:
        window: Any = policy if policy is not None else _manual()
        return peer.request_channel(route, source, data, info=info, window=window, auto_ack=auto_ack)

    return DemandObservable(opener, description=f"request_channel({route!r})", loop=peer.loop)


def request_response(
    peer: Peer, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None
) -> Observable[Payload]:
    """A remote request-response as a cold Observable of one item."""

    def subscribe(observer: abc.ObserverBase[Payload], scheduler: abc.SchedulerBase | None = None) -> Disposable:
        # from another thread, the request runs on the peer's loop (and the observer is called there)
        future = asyncio.run_coroutine_threadsafe(peer.request_response(route, data, info=info), peer.loop)

        def done(f: concurrent.futures.Future[Payload]) -> None:
            if f.cancelled():
                return
            error = f.exception()
            if error is not None:
                observer.on_error(error)  # type: ignore[arg-type]
            else:
                observer.on_next(f.result())
                observer.on_completed()

        future.add_done_callback(done)

        def dispose() -> None:
            future.cancel()

        return Disposable(dispose)

    return reactivex.create(subscribe)


def _manual() -> ReplenishPolicy:
    return Manual(0)
