"""A hub's endpoints as demand Observables: the response's head at once, its body as a
:class:`~.observable.DemandObservable` of bytes.

::

    response = await endpoint(peer, "api", "/events")          # status and headers are here
    response.body.pipe(ops.take(10)).subscribe(print)           # ten chunks, then CANCEL: the hub aborts the request

The body is pulled only as its demand allows (the operators of :mod:`rxchannel.operators`
set it, a bounded default window otherwise), and each pull frees one credit of the
remote stream, so the hub reads the upstream at the pace of the subscriber. Subscribe
once: the body is one response, not a recipe for another request (ask again for that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rxchannel.hub.endpoint_client import EndpointResponse, request_endpoint
from rxchannel.runtime import Peer

from .local import from_async_iterable
from .observable import DemandObservable

__all__ = ["RxEndpointResponse", "endpoint"]


@dataclass(frozen=True, slots=True)
class RxEndpointResponse:
    """An endpoint's response: status, reason, headers and size (None if unknown) at once,
    ``body`` as a demand Observable of bytes. ``response`` is the underlying
    :class:`~rxchannel.hub.EndpointResponse` (``await response.aclose()`` when the body
    is never subscribed)."""

    status: int
    reason: str
    headers: dict[str, str]
    size: int | None
    body: DemandObservable[bytes] = field(repr=False)
    response: EndpointResponse = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.status < 400


async def endpoint(peer: Peer, name: str, path: str = "", **options: Any) -> RxEndpointResponse:
    """Ask endpoint ``name`` for ``path`` (options as :func:`rxchannel.hub.request_endpoint`:
    ``method``, ``query``, ``headers``, ``body``, ``size``, ``window``); returns once the head
    has arrived."""
    response = await request_endpoint(peer, name, path, **options)
    return RxEndpointResponse(
        status=response.status,
        reason=response.reason,
        headers=response.headers,
        size=response.size,
        body=from_async_iterable(response),
        response=response,
    )
