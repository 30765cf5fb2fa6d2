"""One source, many subscribers, every item read once: a broadcast paced by demand.

A :class:`Broadcast` pulls its source only when a subscriber asks for an item nobody has
read yet, and never further than ``max_lag`` items past the slowest attached subscriber:
the items between the slowest and the newest are all it keeps, so its memory is
``max_lag`` items whatever the subscribers do. A subscriber's pull *is* its demand (a
producer pulls only within its peer's credit; an async loop pulls when it wants the next
item), so the source is read at the pace of the subscribers, within the lag window.

The laggard policy, declared: when a subscriber wants an item that would put another
more than ``max_lag`` behind, it waits (the fast are paced by the slow). The subscribers
that hold it back are charged the time it waits; one that has held the others back for
``patience`` seconds in total is detached: its next pull raises :class:`LaggedError`,
which says how many items it had taken (it can continue from there on a stream of its
own) and never anything else. No subscriber can stall the others for longer than that,
and nothing is ever buffered past the window.

Joining: a subscriber can join while the first item is still kept (nobody has gone past
the window yet). ``join_window`` keeps it for that many seconds after the first
subscriber arrived (the first ones wait at the window's edge meanwhile), so that
subscribers that ask at about the same time share one read. A later one gets
:class:`JoinedLateError` at once, never a stream with its beginning silently missing.

Both errors are :class:`~rxchannel.ApplicationError` s, so a handler that serves a
subscription sends them to its peer with their codes (:data:`LAGGED`, :data:`JOINED_LATE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Generic, TypeVar

from rxchannel.core import JOINED_LATE, LAGGED, ApplicationError, ClosedResourceError

__all__ = ["JOINED_LATE", "LAGGED", "Broadcast", "JoinedLateError", "LaggedError", "Subscription"]

T = TypeVar("T")


class LaggedError(ApplicationError):
    """This subscriber was detached from a broadcast: it held the others back for the
    broadcast's whole ``patience`` while more than ``max_lag`` items behind the newest.

    Attributes:
        position: items it had taken (continue from there on a stream of your own).
        behind: how many items behind the newest it was when detached.
    """

    def __init__(self, message: str, *, position: int, behind: int):
        super().__init__(message, code=LAGGED)
        self.position = position
        self.behind = behind


class JoinedLateError(ApplicationError):
    """The broadcast had already dropped its first items (or was over) when this subscriber
    asked to join; it would have missed the beginning. Read the source on a stream of your own."""

    def __init__(self, message: str):
        super().__init__(message, code=JOINED_LATE)


class Subscription(Generic[T]):
    """One subscriber's view of a :class:`Broadcast`: an async iterator (pull = demand).

    Attributes:
        position: items taken so far.
        held_back: seconds this subscriber has held the others back at the window's edge.
        marks_last: the source marks its last item (``Payload.last``): a producer never
            pulls ahead of credit to find the end.
    """

    __slots__ = ("_broadcast", "closed", "error", "held_back", "position")

    def __init__(self, broadcast: Broadcast[T]):
        self._broadcast = broadcast
        self.position = 0
        self.held_back = 0.0
        self.error: BaseException | None = None
        self.closed = False

    @property
    def marks_last(self) -> bool:
        return self._broadcast.marks_last

    def __aiter__(self) -> AsyncIterator[T]:
        """Iterate; leaving the loop (break, an error, cancellation: the iterator is dropped)
        or closing the iterator (a producer does) leaves the broadcast, even before the first item."""
        return _Iteration(self)

    async def __anext__(self) -> T:
        return await self._broadcast._next(self)

    async def next(self) -> T:
        """The next item (what ``async for`` calls).

        Raises:
            StopAsyncIteration: the source ended and every item was taken.
            LaggedError: this subscriber was detached.
            Exception: the source's own error, after the items before it.
        """
        return await self._broadcast._next(self)

    async def aclose(self) -> None:
        """Leave the broadcast (the others go on; the last one out closes the source). Idempotent."""
        await self._broadcast._leave(self)

    def close(self) -> None:
        """Leave now, from synchronous code (a stream's ``on_finish``); if this was the last
        subscriber, the source is closed in the background. Idempotent."""
        self._broadcast._leave_soon(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "detached" if self.error is not None else "attached"
        return f"<Subscription {state} position={self.position}>"


class _Iteration(Generic[T]):
    """``async for`` over a subscription: closing it (or dropping it) leaves the broadcast."""

    __slots__ = ("_sub",)

    def __init__(self, sub: Subscription[T]):
        self._sub = sub

    def __aiter__(self) -> _Iteration[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._sub.next()
        except BaseException:
            await self._sub.aclose()  # the end, an error, or a cancelled loop: it is over for this one
            raise

    async def aclose(self) -> None:
        await self._sub.aclose()

    def __del__(self) -> None:
        if not self._sub.closed:
            with contextlib.suppress(RuntimeError):  # no running loop (interpreter shutdown): nothing to release
                self._sub.close()


class Broadcast(Generic[T]):
    """Items of one source for every subscriber, read once (see the module docstring).

    Args:
        source: an async iterable, opened at the first pull and closed when the last
            subscriber leaves (or when it ends).
        max_lag: items the newest may be ahead of the slowest attached subscriber (>= 1):
            the most this keeps.
        patience: seconds in total a subscriber may hold the others back before it is
            detached (finite: nobody stalls the others forever; 0 detaches at once).
        join_window: seconds after the first subscriber during which others may still join
            at the first item.
        name: what the errors call this broadcast (``"the shared read of 'x'"``).
        on_close: called once the broadcast is over (its source closed).

    Attributes:
        pulled: items read from the source so far.
        detached: subscribers detached for lagging.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        *,
        max_lag: int,
        patience: float = 1.0,
        join_window: float = 0.0,
        name: str = "the broadcast",
        on_close: Callable[[], object] | None = None,
    ):
        check_broadcast(max_lag, patience, join_window)
        self._source = source
        self.max_lag = max_lag
        self.patience = float(patience)
        self.join_window = float(join_window)
        self.name = name
        self.marks_last = bool(getattr(source, "marks_last", False))
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._items: AsyncIterator[T] | None = None
        self._buffer: deque[T] = deque()
        self._base = 0  # index of _buffer[0]
        self._ended = False
        self._end: BaseException | None = None
        self._subs: list[Subscription[T]] = []
        self._pull: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._joining = False
        self._join_timer: asyncio.TimerHandle | None = None
        self._blocked_since: float | None = None
        self._holders: list[Subscription[T]] = []
        self._patience_timer: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Task[None] | None = None
        self.started = False
        self.closed = False
        self.detached = 0

    # ------------------------------------------------------------ state

    @property
    def pulled(self) -> int:
        return self._base + len(self._buffer)

    @property
    def buffered(self) -> int:
        """Items kept for subscribers that have not taken them yet (at most ``max_lag``)."""
        return len(self._buffer)

    @property
    def subscribers(self) -> int:
        """Subscribers attached now (not detached, not gone)."""
        return len(self._subs)

    @property
    def joinable(self) -> bool:
        """A new subscriber would get every item: the first one is still kept."""
        return not self.closed and self._base == 0

    def _floor(self) -> int:
        """The position of the slowest attached subscriber (0 while the join window is open)."""
        if self._joining:
            return 0
        return min((s.position for s in self._subs), default=self.pulled)

    # ------------------------------------------------------------ subscribers

    def subscribe(self) -> Subscription[T]:
        """Attach a subscriber at the first item.

        Raises:
            JoinedLateError: the first item is gone (or the broadcast is over).
        """
        if not self.joinable:
            why = "is over" if self.closed else f"has moved past its first {self._base} item(s)"
            raise JoinedLateError(f"{self.name} {why}: read it on a stream of your own")
        sub = Subscription(self)
        self._subs.append(sub)
        if not self.started:
            self.started = True
            if self.join_window > 0:
                self._joining = True
                self._join_timer = self._loop.call_later(self.join_window, self._join_over)
        return sub

    async def _next(self, sub: Subscription[T]) -> T:
        while True:
            if sub.error is not None:
                raise sub.error
            if sub.closed:
                raise StopAsyncIteration
            if sub.position < self.pulled:
                item = self._buffer[sub.position - self._base]
                sub.position += 1
                self._trim()
                return item
            if self._ended:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            if self._pull is None:
                if self.pulled - self._floor() >= self.max_lag:
                    self._block()  # one more would put the slowest more than max_lag behind
                else:
                    self._start_pull()
            await self._wait()

    def _remove(self, sub: Subscription[T]) -> bool:
        """``sub`` leaves; True when it was the last one (the broadcast is then over)."""
        if sub.closed:
            return False
        sub.closed = True
        if sub in self._subs:
            self._subs.remove(sub)
            if not self._subs and self.started:
                return True
            self._trim()
        self._wake()
        return False

    async def _leave(self, sub: Subscription[T]) -> None:
        if self._remove(sub):
            await self.aclose()  # the last one out: nobody will read the source any more

    def _leave_soon(self, sub: Subscription[T]) -> None:
        if self._remove(sub) and not self.closed:
            self._finish()
            self._releasing = self._loop.create_task(self._release())

    def _detach(self, sub: Subscription[T]) -> None:
        behind = self.pulled - sub.position
        sub.error = LaggedError(
            f"{self.name}: this subscriber was {behind} items behind the newest (the window is {self.max_lag}) "
            f"and held the others back for {sub.held_back:.1f} s (patience {self.patience:g} s); it was detached "
            f"after {sub.position} items: continue from there on a stream of your own",
            position=sub.position,
            behind=behind,
        )
        self._subs.remove(sub)
        self.detached += 1

    # ------------------------------------------------------------ the source

    def _start_pull(self) -> None:
        if self._items is None:
            self._items = self._source.__aiter__()
        self._pull = self._loop.create_task(self._pull_one(self._items))

    async def _pull_one(self, items: AsyncIterator[T]) -> None:
        try:
            item = await items.__anext__()
        except StopAsyncIteration:
            self._ended = True
        except asyncio.CancelledError:
            raise  # closing: aclose() finishes the job
        except Exception as exc:  # every subscriber gets it, after the items before it
            self._ended = True
            self._end = exc
        else:
            if not self.closed:
                self._buffer.append(item)
        finally:
            self._pull = None
            self._wake()

    # ------------------------------------------------------------ pacing and the laggard policy

    def _trim(self) -> None:
        """Drop what every attached subscriber has taken; a moved floor unblocks the fast."""
        floor = self._floor()
        if floor > self._base:
            for _ in range(min(floor - self._base, len(self._buffer))):
                self._buffer.popleft()
            self._base = floor
            self._unblock()
            self._wake()

    def _block(self) -> None:
        """A subscriber waits at the window's edge: charge those holding it back, from now."""
        if self._blocked_since is not None:
            return
        self._blocked_since = self._loop.time()
        if self._joining:
            self._holders = []  # the join window holds it; its timer unblocks
            return
        limit = self.pulled + 1 - self.max_lag
        self._holders = [s for s in self._subs if s.position < limit]
        if self._holders:
            left = min(self.patience - s.held_back for s in self._holders)
            self._patience_timer = self._loop.call_later(max(0.0, left), self._patience_over)

    def _unblock(self) -> None:
        if self._blocked_since is None:
            return
        elapsed = self._loop.time() - self._blocked_since
        for sub in self._holders:
            sub.held_back += elapsed
        self._blocked_since = None
        self._holders = []
        if self._patience_timer is not None:
            self._patience_timer.cancel()
            self._patience_timer = None

    def _patience_over(self) -> None:
        self._patience_timer = None
        holders = self._holders
        self._unblock()
        for sub in holders:
            if sub in self._subs and sub.held_back >= self.patience - 1e-9:
                self._detach(sub)
        self._trim()
        self._wake()

    def _join_over(self) -> None:
        self._join_timer = None
        self._joining = False
        self._unblock()
        self._trim()
        self._wake()

    # ------------------------------------------------------------ waiting

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the source; subscribers still attached get ClosedResourceError. Idempotent."""
        if self.closed:
            return
        self._finish()
        await self._release()

    def _finish(self) -> None:
        """The broadcast is over: no joining, no pulling, nothing kept."""
        self.closed = True
        for timer in (self._join_timer, self._patience_timer):
            if timer is not None:
                timer.cancel()
        self._join_timer = self._patience_timer = None
        self._joining = False
        self._buffer.clear()
        for sub in self._subs:
            sub.error = ClosedResourceError(f"{self.name} was closed")
        self._subs.clear()
        self._wake()
        if self._on_close is not None:
            self._on_close()

    async def _release(self) -> None:
        """Stop a pull under way and close the source."""
        pull, self._pull = self._pull, None
        if pull is not None:
            pull.cancel()
            await asyncio.gather(pull, return_exceptions=True)
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            await aclose()

    def __repr__(self) -> str:
        return (
            f"<Broadcast {self.name} pulled={self.pulled} buffered={self.buffered} "
            f"subscribers={self.subscribers} detached={self.detached}{' closed' if self.closed else ''}>"
        )


def check_broadcast(max_lag: int, patience: float, join_window: float) -> None:
    """Check a broadcast's arguments (operators call it when they are built).

    Raises:
        ValueError: ``max_lag`` is not a positive integer, ``patience`` not a finite
            number of seconds >= 0, or ``join_window`` negative.
    """
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or max_lag < 1:
        raise ValueError(f"max_lag must be a positive number of items, got {max_lag!r}")
    if not isinstance(patience, (int, float)) or not math.isfinite(patience) or patience < 0:
        raise ValueError(
            f"patience must be a finite number of seconds >= 0 (a laggard may not stall the others forever), "
            f"got {patience!r}"
        )
    if not isinstance(join_window, (int, float)) or not math.isfinite(join_window) or join_window < 0:
        raise ValueError(f"join_window must be a finite number of seconds >= 0, got {join_window!r}")
