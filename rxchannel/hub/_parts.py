"""What the hub holds for its routes: a file stream's place in the open-file budget
(:class:`HeldFile`), and the inbox's small helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

from rxchannel.core import ApplicationError, ErrorCode
from rxchannel.files.source import FileSource
from rxchannel.runtime import Payload

__all__ = ["HeldFile", "host_of", "make_parents", "remove_empty"]

_closing: set[asyncio.Task[None]] = set()


class HeldFile:
    """A ``files/`` stream's source as the hub holds it in its open-file budget: the chunks of
    its :class:`FileSource`, and, while it waits for demand, a place another stream may take.

    Once it has waited ``idle_after`` seconds for a pull, it is idle; evicted then (the
    budget is full and a new stream needs its place), its file is closed at once and its
    next pull fails with REJECTED, saying to resume from the offset the worker has.
    """

    #: the last chunk says it is the last (see :class:`FileSource`)
    marks_last = True

    def __init__(self, idle_after: float):
        self.source: FileSource | None = None
        self._items: AsyncIterator[Payload] | None = None
        self._idle_after = idle_after
        self._since = time.monotonic()
        self._pulling = False
        self._error: ApplicationError | None = None

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self

    def idle(self) -> bool:
        """Waiting for demand for at least ``idle_after`` seconds."""
        return self.source is not None and not self._pulling and time.monotonic() - self._since >= self._idle_after

    async def __anext__(self) -> Payload:
        if self._error is not None:
            raise self._error
        if self._items is None:
            assert self.source is not None
            self._items = self.source.__aiter__()
        self._pulling = True
        try:
            return await self._items.__anext__()
        finally:
            self._pulling = False
            self._since = time.monotonic()

    def evict(self, _reason: str) -> None:
        """Close the file now (it waits at a chunk); the next pull fails saying why."""
        waited = time.monotonic() - self._since
        self._error = ApplicationError(
            f"this stream waited {waited:.0f} s for demand while the hub's open-file budget was full: its file was "
            "closed to make room for another; fetch it again to resume from your offset",
            ErrorCode.REJECTED,
        )
        items, self._items = self._items, None
        if items is not None and not self._pulling:
            task = asyncio.ensure_future(items.aclose())  # type: ignore[attr-defined]
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    async def aclose(self) -> None:
        items, self._items = self._items, None
        if items is not None:
            await items.aclose()  # type: ignore[attr-defined]


def host_of(remote: str) -> str:
    """The address of ``host:port`` (``[v6]:port`` too)."""
    host = remote.rsplit(":", 1)[0] if remote.count(":") == 1 or remote.startswith("[") else remote
    return host.strip("[]")


def make_parents(directory: Path, inbox: Path) -> list[Path]:
    """Create ``directory`` (inside ``inbox``); returns those it created, deepest first."""
    created = []
    here = directory
    while here != inbox and not here.exists():
        created.append(here)
        here = here.parent
    directory.mkdir(parents=True, exist_ok=True)
    return created


def remove_empty(directories: list[Path]) -> None:
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return
