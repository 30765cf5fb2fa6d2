"""Your own stream handler, held to the Reactive Streams rules.

    python examples/tck_my_handler.py

A ``Router`` stream handler is served over TCP; the requester sees it as a demand
Observable (``reactive.request_stream``), and ``rxchannel.testing.tck`` drives it as a
Reactive Streams publisher: subscribe, ``request(n)`` (REQUEST_N across the wire),
``cancel()`` (CANCEL), with a recording subscriber checking every rule it can see. The
factory says how to make a publisher of ``n`` items, a failing one, how to tell that the
handler let its source go, and how to wait until the wire is quiet.

The same factory in a pytest suite::

    class TestCountdown(tck.PublisherRules):
        @pytest.fixture
        async def tck_factory(self):
            ...
            return factory

The exit status is 0 when every required rule passed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import rxchannel as rxc
from rxchannel import reactive
from rxchannel.testing import tck
from rxchannel.testing.tck.adapters import from_observable, round_trip

open_sources = 0  # countdowns started and not yet closed: the handler's resources


async def main() -> int:
    router = rxc.Router()

    @router.stream("countdown")
    async def countdown(request: rxc.Request) -> AsyncIterator[bytes]:
        global open_sources
        n = int(request.data)
        if n < 0:
            raise rxc.ApplicationError(f"cannot count down from {n}")
        open_sources += 1
        try:
            for i in range(n, 0, -1):
                yield str(i).encode()
        finally:
            open_sources -= 1

    server = await rxc.serve_tcp(router)
    async with await rxc.connect_tcp("127.0.0.1", server.port) as peer:
        factory = tck.PublisherFactory(
            create=lambda n: from_observable(reactive.request_stream(peer, "countdown", b"%d" % n)),
            create_failed=lambda: from_observable(reactive.request_stream(peer, "countdown", b"-1")),
            released=lambda: open_sources == 0,
            settle=round_trip(peer),
        )
        report = await tck.verify_publisher(factory)
    await server.close()
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
