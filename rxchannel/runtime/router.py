"""Handlers by route and interaction model, and how their results and errors reach the peer.

A route is either exact (``"echo"``) or a prefix ending in ``/`` (``"files/"``), which
matches ``files/<anything>``; the longest matching prefix wins.

Handler return values:

* request-response: ``bytes``, ``str`` or :class:`~rxchannel.Payload` (or an awaitable of one);
* request-stream and request-channel: an iterable or async iterable of items (a demand
  Observable of :mod:`rxchannel.reactive` is one), pulled only as the requester grants
  credit, so a file source reads only what was asked for;
* fire-and-forget: anything (ignored).

Errors: an :class:`~rxchannel.ApplicationError` a handler raises reaches the peer with its
code and message; any other exception reaches it only as "the handler for 'route' failed
(TypeName)" and is logged here, so no local detail (paths, stack traces) leaks.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import warnings
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, Unpack

from rxchannel.core import (
    ApplicationError,
    ClosedResourceError,
    ConnectionLostError,
    ErrorCode,
    Interaction,
    LocalProtocolError,
    RemoteError,
    RxChannelError,
    StreamCancelledError,
    WindowSpec,
)

from .sink import RemoteSink
from .stream import RemoteStream
from .values import Payload

__all__ = ["Handler", "Request", "Requester", "Router", "error_for", "handler_result"]

log = logging.getLogger("rxchannel.runtime")


class _Options(TypedDict, total=False):
    """The keyword options every request of :class:`Requester` takes."""

    info: dict[str, Any] | None
    metadata: bytes | None


class _WindowOptions(_Options, total=False):
    """A request whose replies are a stream: at most ``window`` in flight."""

    window: WindowSpec


class _StreamOptions(_WindowOptions, total=False):
    auto_ack: bool


class Requester(Protocol):
    """The requests a handler can make back to the peer that called it (a :class:`~rxchannel.Peer`,
    whose request methods say what each keyword option means)."""

    def request_stream(
        self, route: str | None, data: bytes = b"", **options: Unpack[_StreamOptions]
    ) -> RemoteStream: ...

    def request_channel(
        self,
        route: str | None,
        source: AsyncIterable[Any] | Iterable[Any] | None,
        data: bytes = b"",
        **options: Unpack[_StreamOptions],
    ) -> RemoteStream: ...

    async def request_response(self, route: str | None, data: bytes = b"", **options: Unpack[_Options]) -> Payload: ...

    async def fire_and_forget(self, route: str | None, data: bytes = b"", **options: Unpack[_Options]) -> None: ...

    async def metadata_push(self, metadata: bytes) -> None: ...

    def remote_sink(self, route: str | None, data: bytes = b"", **options: Unpack[_WindowOptions]) -> RemoteSink: ...


@dataclass(slots=True, kw_only=True)
class Request:
    """A request as a handler sees it.

    Attributes:
        route: the routing tag of the request's composite metadata (or None).
        info: the request's ``application/json`` metadata entry (empty if none).
        data: the request payload's data.
        peer: the peer that made the request (to make requests back).
        remote: its address as the transport knows it (``host:port``), for logs.
        path: the path its bytes take as this side sees it (``direct``, ``webrtc-host``,
            ``webrtc-srflx``, ``webrtc-relay``: ``Transport.path``).
        inbound: for a channel, the requester's items (pulled with the route's window).
    """

    stream_id: int
    interaction: Interaction
    route: str | None
    info: dict[str, Any]
    data: bytes
    metadata: bytes | None
    peer: Requester = field(repr=False)
    #: who made the request (the transport's remote address), for logs
    remote: str = "?"
    #: the path the request came by (the transport's ``path``)
    path: str = "direct"
    initial_n: int = 0
    inbound: RemoteStream | None = field(default=None, repr=False)
    _on_finish: list[Callable[[], object]] = field(default_factory=list, repr=False)
    _open_outbound: Callable[[], RemoteSink] | None = field(default=None, repr=False)
    _outbound: RemoteSink | None = field(default=None, repr=False)

    @property
    def outbound(self) -> RemoteSink:
        """Our side of a request-stream or request-channel, to send to item by item.

        Taking it means the handler sends the items itself (``await sink.send(x)``, or an
        Rx pipeline following ``rxchannel.reactive.outbound(request).demand``) and returns
        None; the stream ends when the sink completes or fails.

        Raises:
            LocalProtocolError: the interaction has no stream of items to send.
        """
        if self._outbound is None:
            if self._open_outbound is None:
                raise LocalProtocolError(f"a {self.interaction.name} request has no stream of items to send")
            self._outbound = self._open_outbound()
        return self._outbound

    def on_finish(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once our side of this request is over: its reply queued for the
        transport, its stream completed, failed or cancelled. A handler holds resources for
        the reply's lifetime with it (a slot, a budget), even though it returns earlier."""
        self._on_finish.append(callback)

    def finished(self) -> None:
        """Run the ``on_finish`` callbacks (called by the runtime, once)."""
        callbacks, self._on_finish = self._on_finish, []
        for callback in callbacks:
            callback()


Handler = Callable[[Request], Any]


class Router:
    """Maps (interaction, route) to handlers (and, for channels, the inbound window)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[Interaction, str], tuple[Handler, WindowSpec]] = {}
        self._prefix: list[tuple[Interaction, str, Handler, WindowSpec]] = []
        self.on_metadata_push: Callable[[bytes], Any] | None = None

    def add(self, interaction: Interaction, route: str, handler: Handler, *, window: WindowSpec = None) -> None:
        """Register ``handler``; ``window`` is the demand a channel handler grants on its inbound half.

        A route ending in ``/`` is a prefix (the longest registered prefix wins). Registering
        the same interaction and route again replaces the earlier handler, exact or prefix alike.
        """
        if route.endswith("/"):
            self._prefix = [e for e in self._prefix if (e[0], e[1]) != (interaction, route)]
            self._prefix.append((interaction, route, handler, window))
            self._prefix.sort(key=lambda entry: -len(entry[1]))
        else:
            self._exact[(interaction, route)] = (handler, window)

    def _decorator(
        self, interaction: Interaction, route: str, window: WindowSpec = None
    ) -> Callable[[Handler], Handler]:
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
        """Decorator: register a request-stream handler.

        The handler returns (or is) an iterable or async iterable of items, pulled only as the
        requester grants credit, with one exception: when credit runs out, the next item is
        pulled and held, so that the stream can end with COMPLETE at once if there is none
        (COMPLETE needs no credit). A requester that asks for exactly 3
        (``window=rxchannel.Manual(3)``) therefore runs a generator 4 steps; the 4th item is
        sent when more credit comes, and dropped if the stream is cancelled first. A
        generator whose steps have side effects (taking a job from a queue) should know this:
        yielding its last item as ``Payload(data, last=True)`` ends the stream without a pull
        past it, and a work queue (``rxchannel.fanout.WorkQueue``) hands out jobs only
        within credit and takes back those a worker did not finish.
        """
        return self._decorator(Interaction.STREAM, route)

    def channel(self, route: str, *, window: WindowSpec = None) -> Callable[[Handler], Handler]:
        """Decorator: register a request-channel handler (``request.inbound`` has the requester's items).

        ``window``: the demand granted for the requester's items — an item count, ``"auto"``,
        or a policy (``Manual(n)`` grants exactly n and no more unless the handler calls
        ``request.inbound.request(k)``); the default window otherwise.
        """
        return self._decorator(Interaction.CHANNEL, route, window)

    def queue(self, route: str, source: Any, **options: Any) -> Any:
        """Deprecated: ``WorkQueue(source, ...).serve(router, route)`` (:mod:`rxchannel.fanout`).
        Kept one release; it warns."""
        warnings.warn(
            "Router.queue(route, source) is deprecated: use rxchannel.fanout.WorkQueue(source).serve(router, route)",
            DeprecationWarning,
            stacklevel=2,
        )
        fanout = importlib.import_module("rxchannel.fanout")  # the layer above: a deprecation shim only
        return fanout.WorkQueue(source, **options).serve(self, route)

    def find(self, interaction: Interaction, route: str | None) -> Handler | None:
        found = self.resolve(interaction, route)
        return found[0] if found is not None else None

    def resolve(self, interaction: Interaction, route: str | None) -> tuple[Handler, WindowSpec] | None:
        """The handler for ``route`` and the window it was registered with, or None."""
        key = "" if route is None else route
        found = self._exact.get((interaction, key))
        if found is not None:
            return found
        for kind, prefix, handler, window in self._prefix:
            if kind is interaction and key.startswith(prefix):
                return handler, window
        return None


async def handler_result(handler: Handler, request: Request) -> Any:
    """Call ``handler`` and check that what it returned fits the interaction.

    A coroutine's result is awaited, but not an Observable's (reactivex Observables are
    awaitable: awaiting would drain them) nor anything that is itself a stream of items.
    A handler that took :attr:`Request.outbound` sends its items itself and returns None.

    Raises:
        TypeError: a stream or channel handler returned something that is not a stream
            of items (the peer sees a generic error; the message is logged here).
    """
    result = handler(request)
    if inspect.isawaitable(result) and not isinstance(result, AsyncIterable) and not hasattr(result, "subscribe"):
        result = await result
    if request._outbound is not None:
        if result is not None:
            raise TypeError("a handler that takes request.outbound sends its items there and returns None")
        return None
    if request.interaction in (Interaction.STREAM, Interaction.CHANNEL):
        if result is None or isinstance(result, (bytes, str, bytearray)):
            raise TypeError("a stream or channel handler must return an iterable or async iterable of items")
        if hasattr(result, "subscribe") and not isinstance(result, AsyncIterable):
            raise TypeError(
                "the handler returned an Observable with no demand: build it from rxchannel.reactive "
                "(from_iterable, file_source ...) or add on_backpressure_buffer/drop/latest"
            )
    return result


def error_for(exc: BaseException, route: str | None, who: str = "handler", remote: str = "?") -> tuple[int, str]:
    """The ERROR frame (code, message) the peer sees for a handler's or source's exception.

    Only an :class:`ApplicationError` says more than the route and the exception's type.
    A refusal is logged at INFO (event ``refused``). A failure is logged at WARNING with its
    traceback when it is news to the application: an exception its handler or source did
    not expect. Errors it has already been handed are logged at DEBUG, one line, no
    traceback: rxchannel's own errors on the sending side (``who="sender"``: the application
    holds the sink, whose call raised them or whose ``done`` carries them), and on either
    side errors that came from elsewhere (the peer's :class:`RemoteError`, a lost
    connection, a cancelled stream). A handler's :class:`LocalProtocolError` (it misused the
    API) is a WARNING of one line: its message says what to change.
    """
    if isinstance(exc, ApplicationError):
        log.info(
            "refused %r from %s: %s",
            route,
            remote,
            exc.message,
            extra={"event": "refused", "fields": {"route": route, "remote": remote, "code": exc.code}},
        )
        return exc.code, exc.message
    if isinstance(exc, (RemoteError, ConnectionLostError, StreamCancelledError, ClosedResourceError)) or (
        who == "sender" and isinstance(exc, RxChannelError)
    ):
        log.debug("%s for route %r from %s ended with %s: %s", who, route, remote, type(exc).__name__, exc)
    elif isinstance(exc, LocalProtocolError):
        log.warning("%s for route %r from %s misused the API: %s", who, route, remote, exc)
    else:
        log.warning("%s for route %r from %s failed", who, route, remote, exc_info=exc)
    return ErrorCode.APPLICATION_ERROR, f"the {who} for {route!r} failed ({type(exc).__name__})"
