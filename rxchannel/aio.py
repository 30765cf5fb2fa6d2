"""Async iteration facade: remote streams as async iterables with a bounded window.

The runtime's own API already is this facade; these helpers name it and add the
conversions to and from ReactiveX that keep demand::

    from rxchannel import aio

    async for chunk in aio.request_stream(peer, "files/big.bin", window="auto"):
        ...                               # leaving the loop (or cancelling) sends CANCEL

    replies = aio.request_channel(peer, "push/x", my_async_generator())   # pulled on credit only
    async with aio.remote_sink(peer, "inbox/x") as sink:                  # you push, on credit
        await sink.send(b"...")

The verbs are the same in every facade (:class:`rxchannel.Peer`, :mod:`rxchannel.reactive`,
:mod:`rxchannel.aiostream`): ``request_stream``, ``request_channel``, ``request_response``,
``fire_and_forget``, ``remote_sink``; each facade differs only in what it returns (here: an
async iterable, a :class:`~rxchannel.RemoteSink`, a coroutine).

``window`` is an item count, ``"auto"`` (adaptive: RTT and consumption rate) or a
:mod:`rxchannel.core` policy. An item counts as consumed when the loop pulls the next
one; pass ``auto_ack=False`` and call ``ack()`` when an asynchronous sink decides.

The operating system's streams (:mod:`rxchannel.pipes`), demand kept across them::

    gunzip = aio.through(["gzip", "-dc"], aio.request_stream(peer, "files/log.gz"))  # a subprocess as a stage
    await aio.to_writer(gunzip, writer)   # an asyncio.StreamWriter: the next item once drain() returned
    aio.from_reader(reader)               # an asyncio.StreamReader: one read per item pulled

One source for several loops, read once (the twin of the Rx ``share_demand``)::

    shared = aio.share_demand(aio.request_stream(peer, "files/big.bin"), max_lag=16, join_window=0.5)
    async def consumer():
        async for chunk in shared.subscribe():   # each pull is this loop's demand
            ...
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import AsyncIterable, Iterable
from typing import Any

from .core import WindowSpec
from .fanout import Broadcast
from .pipes import from_reader, through, to_writer
from .runtime import Payload, Peer, RemoteSink, RemoteStream

__all__ = [
    "fire_and_forget",
    "from_reader",
    "remote_sink",
    "request_channel",
    "request_response",
    "request_stream",
    "share_demand",
    "through",
    "to_writer",
]

#: Old names, kept one release (they warn): the verbs are now the same in every facade, and
#: the conversions to and from ReactiveX are the Rx facade's (facades never import each other).
_RENAMED = {
    "stream": ("rxchannel.aio", "request_stream"),
    "channel": ("rxchannel.aio", "request_channel"),
    "from_observable": ("rxchannel.reactive", "to_async_iterable"),
    "to_observable": ("rxchannel.reactive", "from_async_iterable"),
}


def __getattr__(name: str) -> Any:
    if name not in _RENAMED:
        raise AttributeError(f"module 'rxchannel.aio' has no attribute {name!r}")
    module, new = _RENAMED[name]
    warnings.warn(f"rxchannel.aio.{name} is now {module}.{new}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), new)  # a deprecation shim only


def request_stream(
    peer: Peer,
    route: str,
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: WindowSpec = None,
    auto_ack: bool = True,
) -> RemoteStream:
    """A remote request-stream as an async iterable (see :meth:`rxchannel.Peer.request_stream`)."""
    return peer.request_stream(route, data, info=info, window=window, auto_ack=auto_ack)


def request_channel(
    peer: Peer,
    route: str,
    source: AsyncIterable[Any] | Iterable[Any],
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: WindowSpec = None,
) -> RemoteStream:
    """A remote request-channel: ``source`` is pulled only as the responder grants credit."""
    return peer.request_channel(route, source, data, info=info, window=window)


def remote_sink(
    peer: Peer,
    route: str,
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: WindowSpec = None,
) -> RemoteSink:
    """A request-channel you send to: ``await sink.send(item)`` waits for the remote's credit;
    ``await sink.finish()`` completes and returns the remote's replies (a receipt);
    ``async with`` completes on success and fails the stream on an exception; ``aclose()``
    before completing fails it (a partial stream is never taken for a whole one)."""
    return peer.remote_sink(route, data, info=info, window=window)


async def request_response(peer: Peer, route: str, data: bytes = b"", *, info: dict[str, Any] | None = None) -> Payload:
    """A remote request-response: its one reply (see :meth:`rxchannel.Peer.request_response`)."""
    return await peer.request_response(route, data, info=info)


async def fire_and_forget(peer: Peer, route: str, data: bytes = b"", *, info: dict[str, Any] | None = None) -> None:
    """A remote fire-and-forget: returns once queued under the transport's high-water mark."""
    await peer.fire_and_forget(route, data, info=info)


def share_demand(
    source: AsyncIterable[Any], *, max_lag: int, patience: float = 1.0, join_window: float = 0.0
) -> Broadcast[Any]:
    """``source`` read once for every loop that iterates ``shared.subscribe()``.

    The source is pulled when a loop asks for an item no loop has yet, never more than
    ``max_lag`` items past the slowest attached loop (the fast wait for it); a loop that
    held the others back for ``patience`` seconds in total gets
    :class:`~rxchannel.runtime.LaggedError` (``.position``: the items it had), and one
    that subscribes after the first item was dropped gets
    :class:`~rxchannel.runtime.JoinedLateError` at once. Subscribe every loop before
    they start pulling, or give a ``join_window``. Leaving a loop leaves the broadcast;
    the last one out closes ``source``. See :class:`rxchannel.runtime.Broadcast`.
    """
    return Broadcast(source, max_lag=max_lag, patience=patience, join_window=join_window)
