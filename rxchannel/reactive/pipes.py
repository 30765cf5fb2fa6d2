"""The operating system's streams in the ReactiveX facade (:mod:`rxchannel.pipes` underneath).

* :func:`through` — a subprocess as an operator: ``source.pipe(through(["gzip", "-c"]),
  request_n(sink.demand))``; the operator after it sets how much of the process's stdout
  is read, and the source before it is pulled only as the process takes its stdin;
* :func:`from_reader` — an :class:`asyncio.StreamReader` as a demand source;
* :class:`RxWriterSink` — an Observer writing to an :class:`asyncio.StreamWriter` whose
  ``demand`` is credit that follows ``drain()``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, Callable, Sequence
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxchannel.files import CHUNK_SIZE
from rxchannel.pipes import Writer, check_argv, drain
from rxchannel.pipes import from_reader as _from_reader
from rxchannel.pipes import through as _through
from rxchannel.runtime import Payload, as_payload

from ._threads import LoopThread
from .local import from_async_iterable
from .observable import DemandObservable, to_async_iterable

__all__ = ["RxWriterSink", "from_reader", "through"]


def through(
    argv: Sequence[str],
    *,
    chunk_size: int = CHUNK_SIZE,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Callable[[Observable[Any]], DemandObservable[Payload]]:
    """A subprocess as a transform stage: the items before it go to its stdin, its stdout comes
    out as :class:`~rxchannel.Payload` items (at most ``chunk_size`` bytes each).

    ::

        source:   --a--b--c--|          (pulled as the process takes its stdin)
        through(["gzip", "-c"])
        result:   ------x-----y-|        (its stdout, read only as demanded)

    The result is a demand source: the operator after it (``windowed``, ``request_n``)
    decides how much of the process's stdout is read, and so, through the pipes, how far
    the process runs and how much of the source it takes. Each subscription starts its
    own process. It fails with :class:`~rxchannel.pipes.ProcessFailedError` (exit status,
    the tail of stderr) when the process exits non-zero, and with the source's error
    (the process killed) when the source fails. Disposing terminates the process and
    cancels the source.

    Raises:
        TypeError / ValueError: a bad ``argv`` (when the operator is built); TypeError
            too when it is applied to an Observable without demand (a hot one: put an
            ``on_backpressure_*`` operator before it).
    """
    args = check_argv(argv)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")

    def operator(source: Observable[Any]) -> DemandObservable[Payload]:
        if not isinstance(source, DemandObservable):
            to_async_iterable(source)  # raises the TypeError that says what to add

        def factory() -> AsyncIterable[Payload]:
            return _through(args, to_async_iterable(source), chunk_size=chunk_size, env=env, cwd=cwd)

        return from_async_iterable(factory)

    return operator


def from_reader(reader: asyncio.StreamReader, *, chunk_size: int = CHUNK_SIZE) -> DemandObservable[Payload]:
    """An :class:`asyncio.StreamReader` (a socket, a subprocess's stdout, a pipe) as a demand source:
    one read of at most ``chunk_size`` bytes per item demanded (subscribe it once: a reader is
    read once)."""
    return from_async_iterable(_from_reader(reader, chunk_size=chunk_size))


class _WriterDemand(Observable[int]):
    """A writer sink's ``demand``: it ends when the sink does, and so does the pipeline it drives."""

    ends_pipeline = True


class RxWriterSink(abc.ObserverBase[Any]):
    """An Observer that writes items (``Payload`` or bytes) to an :class:`asyncio.StreamWriter`
    (a socket, a pipe, a subprocess's stdin), with credit that follows ``drain()``::

        sink = RxWriterSink(writer, window=8)
        reactive.request_stream(peer, "files/big.bin").pipe(request_n(sink.demand)).subscribe(sink)
        written = await sink.done

    ``demand`` grants ``window`` items first, then one more each time an item has been
    written and ``drain()`` returned: a slow reader on the other end slows the source
    (across the wire for a remote stream). If the reader goes away (EPIPE, a reset
    socket), ``done`` fails with :class:`~rxchannel.pipes.PipeClosedError` and ``demand``
    completes, which stops the pipeline (a remote stream is cancelled). The writer is
    left open: closing it is the caller's.

    Attributes:
        demand: the counts to grant (subscribe it with ``request_n``).
        done: resolves to the number of bytes written once the source completed, or fails
            with the source's error or the writer's.
    """

    def __init__(self, writer: Writer, *, window: int = 8):
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.writer = writer
        self.window = window
        self.written = 0
        self._owner = LoopThread()
        self._observers: list[abc.ObserverBase[int]] = []
        self.demand: Observable[int] = _WriterDemand(self._subscribe_demand)
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[int] = loop.create_future()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # bounded by the demand it grants
        self._task = loop.create_task(self._run())

    def _subscribe_demand(
        self, observer: abc.ObserverBase[int], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        if self.done.done():
            observer.on_completed()
            return Disposable()
        self._observers.append(observer)
        observer.on_next(self.window)
        return Disposable(lambda: self._observers.remove(observer) if observer in self._observers else None)

    def _grant(self, n: int) -> None:
        for observer in list(self._observers):
            observer.on_next(n)

    def on_next(self, value: Any) -> None:
        self._owner.call(self._queue.put_nowait, ("item", value))

    def on_error(self, error: Exception) -> None:
        self._owner.call(self._queue.put_nowait, ("error", error))

    def on_completed(self) -> None:
        self._owner.call(self._queue.put_nowait, ("end", None))

    async def _run(self) -> None:
        try:
            while True:
                kind, value = await self._queue.get()
                if kind == "end":
                    self.done.set_result(self.written)
                    return
                if kind == "error":
                    raise value
                data = as_payload(value).data
                if data:
                    self.writer.write(data)
                    await drain(self.writer, self.written)
                    self.written += len(data)
                self._grant(1)
        except BaseException as exc:
            if not self.done.done():
                self.done.set_exception(exc)
                self.done.exception()  # retrieved: awaiting it is optional
            if not isinstance(exc, Exception):
                raise
        finally:
            observers, self._observers = self._observers, []
            for observer in observers:
                observer.on_completed()  # the pipeline this sink drove stops
