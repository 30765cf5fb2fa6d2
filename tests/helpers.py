"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import rxchannel as rx


class Counter:
    """A remote stream handler yielding ``int(request.data)`` numbers; it records how many
    items were pulled and whether its generator was closed (completion, error or cancel)."""

    def __init__(self) -> None:
        self.pulled = 0
        self.closed = asyncio.Event()

    async def __call__(self, request: rx.Request) -> AsyncIterator[bytes]:
        try:
            for i in range(int(request.data)):
                self.pulled += 1
                yield str(i).encode()
        finally:
            self.closed.set()
