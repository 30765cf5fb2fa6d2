"""Handlers by route and interaction model.

A route is either exact (``"echo"``) or a prefix ending in ``/`` (``"files/"``), which
matches ``files/<anything>``; the longest matching prefix wins.

Handler return values:

* request-response: ``bytes``, ``str`` or :class:`~rxchannel.Payload` (or an awaitable of one);
* request-stream and request-channel: an iterable or async iterable of items, pulled only
  as the requester grants credit (so a file source reads only what was asked for);
* fire-and-forget: anything (ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rxchannel.core import Interaction

from ._types import Request

__all__ = ["Handler", "Router"]

Handler = Callable[[Request], Any]


class Router:
    """Maps (interaction, route) to handlers."""

    def __init__(self) -> None:
        self._exact: dict[tuple[Interaction, str], Handler] = {}
        self._prefix: list[tuple[Interaction, str, Handler]] = []
        self.on_metadata_push: Callable[[bytes], Any] | None = None

    def add(self, interaction: Interaction, route: str, handler: Handler) -> None:
        if route.endswith("/"):
            self._prefix.append((interaction, route, handler))
            self._prefix.sort(key=lambda entry: -len(entry[1]))
        else:
            self._exact[(interaction, route)] = handler

    def _decorator(self, interaction: Interaction, route: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(interaction, route, handler)
            return handler

        return register

    def response(self, route: str) -> Callable[[Handler], Handler]:
        """Decorator: register a request-response handler."""
        return self._decorator(Interaction.RESPONSE, route)

    def fire_and_forget(self, route: str) -> Callable[[Handler], Handler]:
        """Decorator: register a fire-and-forget handler."""
        return self._decorator(Interaction.FNF, route)

    def stream(self, route: str) -> Callable[[Handler], Handler]:
        """Decorator: register a request-stream handler."""
        return self._decorator(Interaction.STREAM, route)

    def channel(self, route: str) -> Callable[[Handler], Handler]:
        """Decorator: register a request-channel handler (``request.inbound`` has the requester's items)."""
        return self._decorator(Interaction.CHANNEL, route)

    def find(self, interaction: Interaction, route: str | None) -> Handler | None:
        key = "" if route is None else route
        handler = self._exact.get((interaction, key))
        if handler is not None:
            return handler
        for kind, prefix, candidate in self._prefix:
            if kind is interaction and key.startswith(prefix):
                return candidate
        return None
