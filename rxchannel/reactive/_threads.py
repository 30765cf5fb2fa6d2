"""Calls from other threads, carried onto the event loop that owns a stream.

Rx users emit from threads all the time (a ``Subject`` fed by a sensor thread,
``reactivex.interval`` on its thread scheduler, ``observe_on`` a thread pool). Streams,
credit and futures belong to one asyncio event loop and are not thread-safe, so every
entry point that a thread may call goes through :func:`on_loop`: on the loop's own thread
it runs at once, from any other thread it is queued with ``call_soon_threadsafe`` (in
order, waking the loop). Nothing is ever dropped silently on the way: a loop that is
closed makes the call raise.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ParamSpec

__all__ = ["LoopThread", "on_loop"]

P = ParamSpec("P")


class LoopThread:
    """An event loop and the thread that runs it (captured on that thread)."""

    __slots__ = ("loop", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop or asyncio.get_running_loop()
        self.thread = threading.get_ident()

    @property
    def here(self) -> bool:
        """Whether the caller runs on the loop's thread."""
        return threading.get_ident() == self.thread

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop's thread: now if we are on it, else queued (FIFO).

        Raises:
            RuntimeError: from another thread, when the loop is closed (the call cannot happen).
        """
        if self.here:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)


def on_loop(owner: LoopThread, fn: Callable[P, None]) -> Callable[P, None]:
    """``fn`` made safe to call from any thread: it always runs on ``owner``'s loop thread."""

    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        if owner.here:
            fn(*args, **kwargs)
        else:
            owner.loop.call_soon_threadsafe(lambda: fn(*args, **kwargs))

    return call
