"""aiostream facade: remote streams as aiostream sources and pipe operators.

aiostream is GPL-3.0, so it is an optional dependency (``pip install aiostream``, or
``pip install -e '.[aiostream]'`` from a checkout) and this is the only module that
imports it. Everything here composes with aiostream's
own operators (``pipe.map``, ``pipe.chunks``, ``pipe.take`` ...)::

    from aiostream import pipe
    from rxchannel import aiostream as rxpipe

    size = await (
        rxpipe.request_stream(peer, "files/big.bin", window=16)
        | pipe.map(lambda chunk: chunk.data)
        | rxpipe.to_file("big.bin")
    )

Demand: ``request_stream`` keeps at most ``window`` items granted-but-unconsumed (or ``"auto"``);
an item counts as consumed when the pipeline pulls the next one, so a slow operator or
sink downstream paces the remote source. Leaving early (``pipe.take``, ``break``, an
error, task cancellation) closes the stream and sends CANCEL.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

try:
    from aiostream import operator, pipable_operator, streamcontext
    from aiostream import stream as aiostream_stream
except ImportError as exc:  # the optional dependency is not installed: say how to get it
    raise ImportError(
        "rxchannel.aiostream needs the aiostream package (GPL-3.0, so not installed with rxchannel): "
        "pip install aiostream (from a checkout: pip install -e '.[aiostream]'); "
        "rxchannel.aio offers the same streams as plain async iterators without it",
        name=exc.name,
    ) from None

from .core import WindowSpec
from .files import FileSink
from .runtime import Payload, Peer

__all__ = ["push", "read_ahead", "request_channel", "request_stream", "to_file"]

#: Old names, kept one release (they warn): the verbs are the same in every facade, and
#: "window" means credit everywhere (this operator is a read-ahead buffer).
_RENAMED = {"fetch": "request_stream", "channel": "request_channel", "window": "read_ahead"}


def __getattr__(name: str) -> Any:
    if name == "from_observable":  # the conversion is the Rx facade's (facades never import each other)
        warnings.warn(
            "rxchannel.aiostream.from_observable(obs) is now "
            "aiostream.stream.iterate(rxchannel.reactive.to_async_iterable(obs))",
            DeprecationWarning,
            stacklevel=2,
        )
        to_async_iterable = importlib.import_module("rxchannel.reactive").to_async_iterable  # a deprecation shim only
        return lambda observable: aiostream_stream.iterate(to_async_iterable(observable))
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module 'rxchannel.aiostream' has no attribute {name!r}")
    warnings.warn(f"rxchannel.aiostream.{name} is now rxchannel.aiostream.{new}", DeprecationWarning, stacklevel=2)
    return globals()[new]


T = TypeVar("T")


@operator
async def request_stream(
    peer: Peer,
    route: str,
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: WindowSpec = None,
) -> AsyncIterator[Payload]:
    """A remote request-stream as an aiostream source (opened when the stream is iterated)."""
    async with peer.request_stream(route, data, info=info, window=window) as remote:
        async for item in remote:
            yield item


@operator
async def request_channel(
    peer: Peer,
    route: str,
    source: AsyncIterable[Any],
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: WindowSpec = None,
) -> AsyncIterator[Payload]:
    """A remote request-channel: ``source`` goes out on the responder's credit; yields its replies.

    ``source`` may be any async iterable, an aiostream ``Stream`` included: it is iterated
    inside its own stream context (as aiostream asks), and closed with the channel.
    """
    async with (
        streamcontext(source) as items,
        peer.request_channel(route, items, data, info=info, window=window) as remote,
    ):
        async for item in remote:
            yield item


@pipable_operator
def _push(source: AsyncIterable[Any], peer: Peer, route: str, *args: Any, **kwargs: Any) -> AsyncIterator[Payload]:
    """``items | rxpipe.push(peer, "push/x")``: send the items as a request-channel, yield the
    replies (the rest of the arguments as :func:`request_channel` takes them)."""
    return request_channel.raw(peer, route, source, *args, **kwargs)


@pipable_operator
async def _read_ahead(source: AsyncIterable[T], size: int) -> AsyncIterator[T]:
    """Read ahead at most ``size`` items from upstream while downstream is busy.

    A bounded decoupling buffer: upstream runs at most ``size`` items ahead of the
    consumer, never more (with a remote upstream, on top of its own credit window).
    """
    if size <= 0:
        raise ValueError(f"read_ahead size must be positive, got {size}")
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=size)

    async def reader(items: AsyncIterator[T]) -> None:
        try:
            async for item in items:
                await queue.put((True, item))
            await queue.put((False, None))
        except Exception as exc:
            await queue.put((False, exc))

    async with streamcontext(source) as items:
        task = asyncio.ensure_future(reader(items))
        try:
            while True:
                more, value = await queue.get()
                if not more:
                    if value is not None:
                        raise value
                    return
                yield value
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pipable_operator
async def _to_file(
    source: AsyncIterable[Any], path: str | os.PathLike[str], *, require_digest: bool = False
) -> AsyncIterator[int]:
    """Write items (``Payload`` or bytes) to ``path`` via ``path.part``, renamed when complete.

    Yields the bytes written so far after each item, so awaiting the pipeline gives the
    total. Size and SHA-256 are verified when the items announce them (raw hub chunks);
    on error or cancellation the ``.part`` is kept.
    """
    sink = FileSink(path, resume=False, require_digest=require_digest)
    await sink.open()
    try:
        async with streamcontext(source) as items:
            async for item in items:
                await sink.write(item)
                yield sink.written
        await sink.finish()
    except BaseException:
        await sink.abort()
        raise


# The pipe forms, as aiostream's ``pipe`` module exposes its own: ``source | rxpipe.read_ahead(16)``.
push: Callable[..., Any] = _push.pipe
read_ahead: Callable[..., Any] = _read_ahead.pipe
to_file: Callable[..., Any] = _to_file.pipe
