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

from rxchannel.core import Interaction, ReplenishPolicy

from ._types import Request

__all__ = ["Handler", "Router"]

Handler = Callable[[Request], Any]


Window = int | str | ReplenishPolicy | None


class Router:
    """Maps (interaction, route) to handlers (and, for channels, the inbound window)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[Interaction, str], Handler] = {}
        self._prefix: list[tuple[Interaction, str, Handler]] = []
        self._windows: dict[tuple[Interaction, str], Window] = {}
        self.on_metadata_push: Callable[[bytes], Any] | None = None

    def add(self, interaction: Interaction, route: str, handler: Handler, *, window: Window = None) -> None:
        """Register ``handler``; ``window`` is the demand a channel handler grants on its inbound half."""
        if route.endswith("/"):
            self._prefix.append((interaction, route, handler))
            self._prefix.sort(key=lambda entry: -len(entry[1]))
        else:
            self._exact[(interaction, route)] = handler
        self._windows[(interaction, route)] = window

    def _decorator(self, interaction: Interaction, route: str, window: Window = None) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(interaction, route, handler, window=window)
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

    def channel(self, route: str, *, window: Window = None) -> Callable[[Handler], Handler]:
        """Decorator: register a request-channel handler (``request.inbound`` has the requester's items).

        ``window``: the demand granted for the requester's items — an item count, ``"auto"``,
        or a policy (``Manual(n)`` grants exactly n and no more unless the handler calls
        ``request.inbound.request(k)``); the default window otherwise.
        """
        return self._decorator(Interaction.CHANNEL, route, window)

    def find(self, interaction: Interaction, route: str | None) -> Handler | None:
        found = self.resolve(interaction, route)
        return found[0] if found is not None else None

    def resolve(self, interaction: Interaction, route: str | None) -> tuple[Handler, Window] | None:
        """The handler for ``route`` and the window it was registered with, or None."""
        key = "" if route is None else route
        handler = self._exact.get((interaction, key))
        if handler is not None:
            return handler, self._windows[(interaction, key)]
        for kind, prefix, candidate in self._prefix:
            if kind is interaction and key.startswith(prefix):
                return candidate, self._windows[(kind, prefix)]
        return None
