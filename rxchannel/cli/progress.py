"""The progress bar of transfers (rich), on stderr when it is a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["Bar", "progress_bar"]


class Bar:
    """A rich progress bar: call it with (bytes, total, credits in flight); :meth:`note` adds a state."""

    def __init__(self, bar: Any, task: Any, label: str):
        self._bar, self._task, self._label = bar, task, label
        self._state: str | None = None
        self._sources: int | None = None

    def path(self, path: str) -> None:
        """Show the path the bytes take (``direct``, ``webrtc-host (native)``...)."""
        self._bar.update(self._task, path=path)

    def __call__(self, done: int, total: int | None, credits: int) -> None:
        self._bar.update(self._task, completed=done, total=total, credits=credits)

    def note(self, state: str | None) -> None:
        """Show ``state`` beside the label (``reconnecting…``), or nothing."""
        self._state = state
        self._describe()

    def feeding(self, sources: int) -> None:
        """Show how many sources are feeding the transfer (``3 sources``)."""
        self._sources = sources
        self._describe()

    def _describe(self) -> None:
        shown = [s for s in (self._state, f"{self._sources} sources" if self._sources is not None else None) if s]
        self._bar.update(self._task, description=f"{self._label} ({', '.join(shown)})" if shown else self._label)


@contextlib.contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Bar | None]:
    """A rich progress bar on a terminal (bytes, rate, ETA, credits in flight); None otherwise."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),  # sizes in KiB/MiB as everywhere in the CLI; rates in MB/s
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("credits in flight: {task.fields[credits]}"),
        TextColumn("{task.fields[path]}"),
    )
    from rich.console import Console

    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield Bar(bar, bar.add_task(label, total=None, credits=0, path=""), label)
