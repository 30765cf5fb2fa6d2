"""A bidirectional channel as one Rx object, with demand kept in both directions.

    python examples/rx_channel_relay.py

The requester sends numbers and reads back their squares through one ``reactive.channel``:
an Observer (what it sends follows ``ch.demand``) with ``inbound`` (what comes back). The
responder is a relay written the same way: its inbound is driven by its outbound's demand
(``window=Manual(0)`` + ``request_n``), so a slow reader at the requester slows the
requester's own source, across the wire and back.
"""

from __future__ import annotations

import asyncio
import time

from reactivex import operators as ops

import rxchannel as rxc
from rxchannel import reactive
from rxchannel.operators import request_n


async def main() -> None:
    router = rxc.Router()

    @router.channel("square", window=rxc.Manual(0))  # grant only what our own outbound is granted
    def square(request: rxc.Request) -> None:
        out = reactive.outbound(request)
        reactive.inbound(request).pipe(
            request_n(out.demand),
            ops.map(lambda item: str(int(item.data) ** 2).encode()),
        ).subscribe(out)

    server = await rxc.serve_tcp(router)
    peer = await rxc.connect_tcp("127.0.0.1", server.port)

    ch = reactive.channel(peer, "square", window=4)  # at most 4 squares in flight to us
    pulled = 0
    squares: list[int] = []
    done = asyncio.get_running_loop().create_future()

    def numbers():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            assert pulled <= len(squares) + 4 + 2, "the source ran ahead of the reader"
            yield str(i).encode()

    def read(item: rxc.Payload) -> None:
        time.sleep(0.0005)  # a slow reader
        squares.append(int(item.data))

    ch.inbound.subscribe(on_next=read, on_completed=lambda: done.set_result(None), on_error=done.set_exception)
    reactive.from_iterable(numbers()).pipe(request_n(ch.demand)).subscribe(ch)
    await done
    assert squares == [i * i for i in range(1000)]
    print(f"1000 squares through a relay; the source never ran more than 6 ahead of the reader ({pulled} pulled)")
    await peer.close()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
