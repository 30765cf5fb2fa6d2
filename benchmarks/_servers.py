"""Benchmark servers, each run in its own process: ``python -m benchmarks._servers IMPL [LOOP]``.

Each serves route ``bench`` as a request-stream: the request data is JSON
``{"count": N, "size": S}``; the response is N payloads of S bytes. The process prints
its port on stdout, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any


async def _wait_stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def serve_rxchannel() -> None:
    import rxchannel as rxc

    router = rxc.Router()

    @router.stream("bench")
    async def bench(req: rxc.Request) -> AsyncIterator[bytes]:
        spec = json.loads(req.data)
        blob = b"x" * spec["size"]
        for _ in range(spec["count"]):
            yield blob

    server = await rxc.serve_tcp(router)
    print(server.port, flush=True)
    await _wait_stdin_closed()
    await server.close()


async def serve_rsocket_py() -> None:
    import logging

    logging.getLogger("pyrsocket").setLevel(logging.ERROR)  # it logs every late REQUEST_N and frame

    from rsocket.payload import Payload
    from rsocket.routing.request_router import RequestRouter
    from rsocket.routing.routing_request_handler import RoutingRequestHandler
    from rsocket.rsocket_server import RSocketServer
    from rsocket.streams.stream_from_generator import StreamFromGenerator
    from rsocket.transports.tcp import TransportTCP

    router = RequestRouter()

    @router.stream("bench")
    async def bench(payload: Payload) -> Any:
        spec = json.loads(payload.data)
        blob, count = b"x" * spec["size"], spec["count"]

        def gen() -> Iterator[tuple[Payload, bool]]:
            for i in range(count):
                yield Payload(blob), i == count - 1

        return StreamFromGenerator(gen)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        RSocketServer(TransportTCP(reader, writer), handler_factory=lambda: RoutingRequestHandler(router))

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await _wait_stdin_closed()
    server.close()


async def serve_echo() -> None:
    """Bare TCP echo (no RSocket): the round trip any request-n protocol pays for credit."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await _wait_stdin_closed()
    server.close()


if __name__ == "__main__":
    from ._loops import run_on

    impl, loop = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    run_on({"rxchannel": serve_rxchannel, "rsocket-py": serve_rsocket_py, "echo": serve_echo}[impl](), loop)
