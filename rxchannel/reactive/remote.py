"""Remote streams as demand Observables: each subscription opens one RSocket stream."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxchannel.core import Manual, ReplenishPolicy
from rxchannel.runtime import Payload, Peer

from .observable import DemandObservable, PullStream

__all__ = ["fire_and_forget", "request_channel", "request_response", "request_stream"]


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
    return _one_call(peer, lambda: peer.request_response(route, data, info=info))


def fire_and_forget(
    peer: Peer, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None
) -> Observable[Any]:
    """A remote fire-and-forget as a cold Observable that completes, with no item, once the
    request is queued under the transport's high-water mark (each subscription sends one)."""
    return _one_call(peer, lambda: peer.fire_and_forget(route, data, info=info))


def _one_call(peer: Peer, call: Callable[[], Coroutine[Any, Any, Any]]) -> Observable[Any]:
    """One call on the peer per subscription: its result (if not None) then completion, or its error."""

    def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Disposable:
        # from another thread, the call runs on the peer's loop (and the observer is called there)
        future = asyncio.run_coroutine_threadsafe(call(), peer.loop)

        def done(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled():
                return
            error = f.exception()
            if error is not None:
                observer.on_error(error)  # type: ignore[arg-type]
                return
            result = f.result()
            if result is not None:
                observer.on_next(result)
            observer.on_completed()

        future.add_done_callback(done)

        def dispose() -> None:
            future.cancel()

        return Disposable(dispose)

    return reactivex.create(subscribe)


def _manual() -> ReplenishPolicy:
    return Manual(0)
