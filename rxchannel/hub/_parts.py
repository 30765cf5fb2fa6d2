"""What the hub holds for its routes: a file stream's place in the open-file budget
(:class:`HeldFile`), and the inbox's small helpers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from rxchannel.core import ApplicationError, ErrorCode
from rxchannel.files.source import FileSource
from rxchannel.runtime import Payload

__all__ = ["HeldFile", "InboxBudget", "host_of", "make_parents", "remove_empty"]

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

    def __getattr__(self, name: str) -> object:
        """The source's own attributes (``size``, ``offset``, ``read_offset``...), once it has one."""
        source = self.__dict__.get("source")
        if source is None:
            raise AttributeError(name)
        return getattr(source, name)

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


class InboxBudget:
    """What each address holds in the inbox (pushes to a hub without a secret): its finished
    pushes still there and its unfinished ones, against ``limit`` bytes (None: no budget).
    Counted by this process: with ``serve --processes N``, each process counts its own."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self._stored: dict[str, dict[Path, int]] = {}
        self._unfinished: Counter[str] = Counter()

    def check(self, address: str, size: int) -> None:
        """Refuse a push of ``size`` bytes announced from ``address`` (blocking: run it in a thread).

        Raises:
            ApplicationError: REJECTED, past the budget.
        """
        stored = self._stored.get(address, {})
        for path in [p for p in stored if not p.exists()]:  # moved away or deleted by the operator
            del stored[path]
        if not stored:
            self._stored.pop(address, None)
        held = sum(stored.values()) + self._unfinished[address]
        if self.limit is not None and held + size > self.limit:
            raise ApplicationError(
                f"{address} already has {held >> 20} MiB in this hub's inbox; an address may hold "
                f"{self.limit >> 20} MiB (unauthenticated pushes; --max-upload-per-address)",
                ErrorCode.REJECTED,
            )

    def add(self, address: str, size: int) -> None:
        """``size`` more bytes of a push under way from ``address``.

        Raises:
            ApplicationError: REJECTED, past the budget.
        """
        self._unfinished[address] += size
        held = self._unfinished[address] + sum(self._stored.get(address, {}).values())
        if self.limit is not None and held > self.limit:
            raise ApplicationError(
                f"this upload would take {address} past the {self.limit >> 20} MiB an address may hold in "
                "the inbox (unauthenticated pushes; --max-upload-per-address)",
                ErrorCode.REJECTED,
            )

    def release(self, address: str, size: int) -> None:
        """A push from ``address`` is over: its ``size`` bytes are no longer under way."""
        self._unfinished[address] -= size
        if self._unfinished[address] <= 0:
            del self._unfinished[address]

    def stored(self, address: str, path: Path, size: int) -> None:
        """A push from ``address`` is in the inbox at ``path``."""
        self._stored.setdefault(address, {})[path] = size


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
