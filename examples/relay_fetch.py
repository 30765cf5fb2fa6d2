"""A relay between a hub and a worker, with demand end to end: A -> B -> C.

    python examples/relay_fetch.py

B serves ``files/`` by relaying every request to the hub A (``forward(upstream,
window=4)``): a chunk crosses B only when C asked for it, so C's disk paces A's
reads, and B never holds more than 4 chunks whatever the file's size. C's fetch is
verified end to end: the size and digest A sends cross B unchanged.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import rxchannel as rxc
from rxchannel.fanout import forward
from rxchannel.files import fetch_file, sha256_file
from rxchannel.hub import Hub


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "a"
        root.mkdir()
        (root / "big.bin").write_bytes(os.urandom(4 << 20))
        hub = Hub(root)
        a = await rxc.serve_tcp(hub.router)  # A: the hub

        upstream = await rxc.connect_tcp("127.0.0.1", a.port)
        relay_router = rxc.Router()
        relay_router.stream("files/")(forward(upstream, window=4))
        b = await rxc.serve_tcp(relay_router)  # B: the relay

        c = await rxc.connect_tcp("127.0.0.1", b.port)  # C: the worker; its writes set the pace
        most_ahead = 0

        def written(done: int, size: int | None, in_flight: int) -> None:
            nonlocal most_ahead
            read_by_a = sum(source.read_offset for source in hub.sources)
            most_ahead = max(most_ahead, read_by_a - done)

        result = await fetch_file(c, "big.bin", Path(tmp) / "c" / "big.bin", window=8, progress=written)
        assert result.sha256 == sha256_file(root / "big.bin")
        chunks_ahead = most_ahead // (64 << 10)
        print(f"C fetched {result.size} bytes through B, sha256 verified")
        print(f"A was never more than {chunks_ahead} chunks ahead of what C had written (windows 8 + 4)")
        assert chunks_ahead <= 8 + 4 + 1
        await c.close()
        await b.close()
        await upstream.close()
        await a.close()
        hub.close()


if __name__ == "__main__":
    asyncio.run(main())
