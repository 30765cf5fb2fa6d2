"""Files in the ReactiveX facade: a demand-driven file source and an acknowledging file sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Any

from reactivex import abc
from reactivex.subject import Subject

from rxchannel.files import CHUNK_SIZE, FileSink, FileSource
from rxchannel.runtime import Payload

from .local import from_async_iterable
from .observable import DemandObservable

__all__ = ["RxFileSink", "file_source"]


def file_source(path: Any, *, chunk_size: int | None = None, offset: int = 0) -> DemandObservable[Payload]:
    """A file's chunks as a demand source: each chunk is read (in a thread) only when demanded."""

    def factory() -> AsyncIterable[Payload]:
        return FileSource(path, chunk_size=chunk_size or CHUNK_SIZE, offset=offset)

    return from_async_iterable(factory)


class RxFileSink(abc.ObserverBase[Any]):
    """An Observer that writes items (``Payload`` or bytes) to a file, acknowledging each once written.

    Pair it with a demand operator so that writes, not arrivals, drive demand::

        sink = RxFileSink("out.bin")
        source.pipe(windowed(8, acks=sink.acks), ops.map(transform)).subscribe(sink)
        digest = await sink.done

    It writes ``<path>.part`` and renames it when the stream completes; size and SHA-256
    are verified when the items announce them (raw hub chunks), and a transformed stream,
    which announces none, is accepted as written. On error the ``.part`` is kept.

    Attributes:
        acks: emits 1 per item written (an upstream item, when the transforms are 1:1).
        done: resolves to the SHA-256 of what was written, or fails with the stream's error.
    """

    def __init__(self, path: Any, *, resume: bool = False):
        self.sink = FileSink(path, resume=resume, require_digest=False)
        self.acks: Subject[int] = Subject()
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[str] = loop.create_future()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # bounded by the upstream window
        self._task = loop.create_task(self._run())

    def on_next(self, value: Any) -> None:
        self._queue.put_nowait(("item", value))

    def on_error(self, error: Exception) -> None:
        self._queue.put_nowait(("error", error))

    def on_completed(self) -> None:
        self._queue.put_nowait(("end", None))

    async def _run(self) -> None:
        try:
            await self.sink.open()
            while True:
                kind, value = await self._queue.get()
                if kind == "item":
                    await self.sink.write(value)
                    self.acks.on_next(1)
                elif kind == "end":
                    self.done.set_result(await self.sink.finish())
                    return
                else:
                    raise value
        except BaseException as exc:
            await self.sink.abort()
            if not self.done.done():
                self.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
