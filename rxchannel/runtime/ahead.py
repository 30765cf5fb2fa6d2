"""A source read at most one item ahead of demand, so that its end is found without any.

Completion needs no demand (Reactive Streams §1.5 and §2.9; Protocol.md "Reactive Streams
Semantics": COMPLETE needs no credit): a cold source whose last item was taken must be
seen to end even while its consumer asks for nothing. So when demand runs out, the next
item is pulled anyway and held; if the source has ended instead, the end is known at once.
Every demand-driven pull in rxchannel (a stream's outbound sink, a local pull, a balanced
share) holds its one item here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

__all__ = ["Ahead"]

T = TypeVar("T")

_NOTHING: Any = object()


class Ahead(Generic[T]):
    """``items`` with room for one item read ahead.

    :meth:`fill` reads the next item unless one is held; :meth:`take` hands it over.
    ``ended`` is true once the source has ended (``error`` holds its exception, if it
    failed), ``exhausted`` once it has ended and nothing is held.
    """

    __slots__ = ("_held", "_items", "ended", "error")

    def __init__(self, items: AsyncIterator[T]):
        self._items = items
        self._held: Any = _NOTHING
        self.ended = False
        self.error: BaseException | None = None

    @property
    def holding(self) -> bool:
        return self._held is not _NOTHING

    @property
    def exhausted(self) -> bool:
        return self.ended and self._held is _NOTHING

    async def fill(self, *, catch: bool = False) -> bool:
        """Hold the next item (if none is held). Returns False when the source has ended.

        The source's exception propagates, unless ``catch``: then it is kept in ``error``
        (for whoever takes next) and the source counts as ended.
        """
        if self._held is not _NOTHING:
            return True
        if self.ended:
            return False
        try:
            self._held = await self._items.__anext__()
        except StopAsyncIteration:
            self.ended = True
            return False
        except Exception as exc:
            if not catch:
                raise
            self.ended, self.error = True, exc
            return False
        return True

    def take(self) -> T:
        """The item held (call only while :attr:`holding`)."""
        item, self._held = self._held, _NOTHING
        return item  # type: ignore[no-any-return]

    def drop(self) -> None:
        """Forget the item held (its consumer is gone)."""
        self._held = _NOTHING

    async def aclose(self) -> None:
        """Close the source (an async generator's ``finally`` runs now)."""
        self._held = _NOTHING
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            await aclose()
