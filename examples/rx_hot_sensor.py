"""A hot sensor pushed to a slow remote consumer with an explicit overflow policy.

    python examples/rx_hot_sensor.py

The sensor emits every millisecond whether or not anyone keeps up. The remote handler
takes ~10 ms per reading, and its credits are the only demand: with
``on_backpressure_latest()`` the sender keeps just the newest unsent reading, so memory
stays bounded and the consumer always gets fresh data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from reactivex.subject import Subject

import rxchannel as rxc
from rxchannel.operators import on_backpressure_latest


async def main() -> None:
    router = rxc.Router()
    seen: list[int] = []

    @router.channel("ingest")
    async def ingest(request: rxc.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async for reading in request.inbound:
            seen.append(int(reading.data))
            await asyncio.sleep(0.01)  # a slow consumer
        yield f"{len(seen)} readings".encode()

    server = await rxc.serve_tcp(router)
    peer = await rxc.connect_tcp("127.0.0.1", server.port)

    sensor: Subject[bytes] = Subject()
    loop = asyncio.get_running_loop()
    emitted = 0

    def tick() -> None:
        nonlocal emitted
        if emitted == 1000:
            sensor.on_completed()
            return
        sensor.on_next(str(emitted).encode())
        emitted += 1
        loop.call_later(0.001, tick)

    readings = sensor.pipe(on_backpressure_latest())
    replies = peer.request_channel("ingest", readings)
    loop.call_soon(tick)
    receipt = [r.data async for r in replies]
    print(f"sensor emitted {emitted}, consumer received {len(seen)}: {receipt[0].decode()}")
    assert seen == sorted(seen), "readings arrive in order"
    assert len(seen) < emitted, "the slow consumer skipped stale readings instead of queueing them"
    await peer.close()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
