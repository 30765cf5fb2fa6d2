"""Relays: a handler that serves a stream it pulls from another peer, demand kept end to end.

In A → B → C, B's handler returns ``relay(upstream, route, data, window=w)``. Nothing in B
reads ahead of C: B's producer pulls the relay only within C's credit (plus one item, to
find the end), and each pull frees one credit of B's window towards A; so A's source is
read at most ``w`` items past what C's demand let through, and C's slow sink slows A's
disk. What B holds for the stream is at most its window ``w`` of items.

::

    upstream = await rxc.connect("tcp://a:8765")
    router = rxc.Router()
    router.stream("files/")(forward(upstream, window=8))      # every files/<path> from A

The relay passes items with their metadata (so a file's size and digest reach C
unchanged), the upstream's errors with their code and message (C sees A's "no such
file" or "file changed", not a relay failure), and C's CANCEL to A.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from rxchannel.core import (
    ApplicationError,
    ConnectionLostError,
    ErrorCode,
    RemoteError,
    ReplenishPolicy,
    is_stream_code,
)
from rxchannel.runtime.router import Handler, Request, Requester
from rxchannel.runtime.stream import RemoteStream
from rxchannel.runtime.values import Payload

__all__ = ["Relay", "forward", "relay"]


class Relay:
    """An upstream request-stream as the items of a handler's stream (see the module docstring).

    Attributes:
        stream: the upstream stream (opened when first pulled, i.e. once the downstream
            granted credit).
    """

    def __init__(self, stream: RemoteStream):
        self.stream = stream

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self._items()

    async def _items(self) -> AsyncIterator[Payload]:
        try:
            async for item in self.stream:  # pulling the next item frees the credit of the one sent on
                yield item
        except RemoteError as exc:
            code = exc.code if is_stream_code(exc.code) else ErrorCode.APPLICATION_ERROR
            raise ApplicationError(exc.message or str(exc), code) from None
        except ConnectionLostError as exc:
            raise ApplicationError(f"the relay lost its upstream connection: {exc}") from None
        finally:
            await self.stream.aclose()  # the downstream cancelled (or it ended): so does the upstream


def relay(
    upstream: Requester,
    route: str | None,
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: int | str | ReplenishPolicy = 8,
) -> Relay:
    """Serve ``route`` of ``upstream`` as this handler's stream, holding at most ``window`` items."""
    return Relay(upstream.request_stream(route, data, info=info, window=window))


def forward(
    upstream: Requester,
    *,
    window: int | str | ReplenishPolicy = 8,
    route: Callable[[str | None], str | None] | None = None,
) -> Handler:
    """A request-stream handler that relays each request to ``upstream``: same route (or
    ``route(request.route)``), same data and JSON metadata; ``window`` items at most in B."""

    def handler(request: Request) -> Relay:
        target = route(request.route) if route is not None else request.route
        return relay(upstream, target, request.data, info=request.info or None, window=window)

    return handler
