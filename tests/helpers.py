"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

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


class FrameTap:
    """Records every frame a peer's transport writes (the frames still go out unchanged)."""

    def __init__(self, peer: rx.Peer) -> None:
        self.frames: list[bytes] = []
        transport = peer.transport
        original = transport.write

        def write(frames: list[bytes]) -> None:
            self.frames.extend(frames)
            original(frames)

        transport.write = write  # type: ignore[method-assign]

    def decoded(self, stream_id: int | None = None) -> list[Any]:
        """The frames written, decoded (only those of ``stream_id`` if given)."""
        from rxchannel.core import decode_frame

        frames = [decode_frame(f) for f in self.frames]
        return [f for f in frames if stream_id is None or f.stream_id == stream_id]

    def request_n(self, stream_id: int) -> list[int]:
        """The REQUEST_N values written for ``stream_id``."""
        from rxchannel.core._frames import RequestNFrame

        return [f.n for f in self.decoded(stream_id) if isinstance(f, RequestNFrame)]
