"""A hostile "hub" for CLI tests: a real TCP server, in a thread, that answers every request
with frames a test scripts (lies about sizes, escape sequences, ignoring credit), or stays
silent. It speaks RSocket's TCP framing with the core's own encoder, so what it sends is
exactly what a malicious hub could put on the wire.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rxchannel.core import (
    FrameType,
    KeepaliveFrame,
    LengthPrefixDecoder,
    RequestFrame,
    decode_frame,
    encode_frame,
)

#: answer(stream_id, request) -> frames to send (already encoded, without the length prefix)
Answer = Callable[[int, RequestFrame], list[bytes]]


class LyingHub:
    """``url`` of a TCP hub that answers each request with ``answer`` (None: never answers anything)."""

    def __init__(self, answer: Answer | None):
        self.answer = answer
        self.requests: list[RequestFrame] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = LengthPrefixDecoder(1 << 24)
        try:
            while data := await reader.read(65536):
                for raw in decoder.feed(data):
                    frame = decode_frame(raw)
                    if self.answer is None:
                        continue  # silent: not even KEEPALIVE echoes
                    if isinstance(frame, KeepaliveFrame) and frame.respond:
                        self._write(writer, [encode_frame(KeepaliveFrame(respond=False))])
                    elif isinstance(frame, RequestFrame) and frame.type != FrameType.REQUEST_FNF:
                        self.requests.append(frame)
                        self._write(writer, self.answer(frame.stream_id, frame))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _write(writer: asyncio.StreamWriter, frames: list[bytes]) -> None:
        for frame in frames:
            writer.write(len(frame).to_bytes(3, "big") + frame)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.stop()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(10)


@contextmanager
def lying_hub(answer: Answer | None) -> Iterator[LyingHub]:
    hub = LyingHub(answer)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
