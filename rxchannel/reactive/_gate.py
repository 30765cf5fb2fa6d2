"""One subscriber to a sink's ``demand``: the sink's grants, and its end, reach it until it
disposes its subscription (the remote sink here and the JetStream sink share it)."""

from __future__ import annotations

from reactivex import abc

__all__ = ["DemandGate"]


class DemandGate:
    """Passes ``grant(n)`` and ``end()`` on to ``observer`` until :meth:`close`."""

    def __init__(self, observer: abc.ObserverBase[int]):
        self._observer = observer
        self._open = True

    def grant(self, n: int) -> None:
        if self._open:
            self._observer.on_next(n)

    def end(self, _done: object = None) -> None:
        """The stream is over (a done callback: its argument is ignored)."""
        if self._open:
            self._observer.on_completed()

    def close(self) -> None:
        self._open = False
