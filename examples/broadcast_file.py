"""One hub, four workers, one read: a file broadcast with demand (``share/<path>``).

    python examples/broadcast_file.py

Four workers ask the hub for the same 8 MiB file at once with ``fetch_file(...,
shared=True)`` (the CLI: ``rxchannel fetch URL big.bin --shared``). The hub reads it from
its disk once, at the pace of the workers' demand and never more than ``share_max_lag``
chunks ahead of the slowest; each worker verifies its copy end to end (SHA-256). A worker
that came late, or fell too far behind, would continue from its own offset on
``files/big.bin`` by itself.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import rxchannel as rxc
from rxchannel.files import fetch_file, sha256_file
from rxchannel.hub import Hub, HubLimits


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "share"
        root.mkdir()
        (root / "big.bin").write_bytes(os.urandom(8 << 20))
        hub = Hub(root, limits=HubLimits(share_join_window=0.5, share_max_lag=32))
        server = await rxc.serve_tcp(hub.router)  # any transport: rxc.serve(hub.router, transport="webrtc")
        workers = [await rxc.connect_tcp("127.0.0.1", server.port) for _ in range(4)]
        results = await asyncio.gather(
            *(
                fetch_file(peer, "big.bin", Path(tmp) / f"worker{i}" / "big.bin", window=16, shared=True)
                for i, peer in enumerate(workers)
            )
        )
        expected = sha256_file(root / "big.bin")
        for i, result in enumerate(results):
            assert result.sha256 == expected
            how = "from the shared read" if result.fallback is None else f"partly on its own ({result.fallback})"
            print(f"worker {i}: {result.size} bytes {how}, sha256 {result.sha256[:12]}... verified")
        print(f"the hub opened the file {hub.files_opened} time(s) and read {hub.bytes_read} bytes for 4 workers")
        assert hub.files_opened == 1 and hub.bytes_read == 8 << 20
        for peer in workers:
            await peer.close()
        await server.close()
        hub.close()


if __name__ == "__main__":
    asyncio.run(main())
