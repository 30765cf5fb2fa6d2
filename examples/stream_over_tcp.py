"""Quickstart: a request-stream over TCP with a bounded window.

    python examples/stream_over_tcp.py

The server's source is pulled only as the client's window allows: it never runs ahead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import rxchannel as rxc


async def main() -> None:
    router = rxc.Router()
    produced = 0

    @router.stream("squares")
    async def squares(request: rxc.Request) -> AsyncIterator[bytes]:
        nonlocal produced
        for i in range(int(request.data)):
            produced += 1
            yield str(i * i).encode()

    server = await rxc.serve_tcp(router)  # 127.0.0.1, a free port
    async with await rxc.connect_tcp("127.0.0.1", server.port) as client:
        received = []
        async for item in client.request_stream("squares", b"1000", window=8):
            received.append(int(item.data))
            if len(received) == 10:
                break  # leaving the loop cancels the stream on the server
        print("first ten squares:", received)
        print("items the server produced:", produced, "(at most 10 consumed + 8 in flight + 1)")
        assert produced <= 10 + 8 + 1
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
