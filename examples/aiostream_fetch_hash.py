"""aiostream pipeline: fetch a file from a hub, hash it on the way, write it.

    python examples/aiostream_fetch_hash.py

``rxpipe.request_stream`` keeps 8 chunks in flight; each is consumed when the pipeline pulls the
next one, so the hashing and the writing pace the hub's disk reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from aiostream import pipe

from rxchannel import aiostream as rxpipe
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import connect, serve


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "hub")
        root.mkdir()
        data = os.urandom(1_000_000)
        (root / "blob.bin").write_bytes(data)
        service = await serve(Hub(root, limits=HubLimits(chunk_size=32 * 1024)).router, transport="ws")
        peer = await connect(service.url)

        digest = hashlib.sha256()

        def hash_chunk(chunk: bytes) -> bytes:
            digest.update(chunk)
            return chunk

        written = await (
            rxpipe.request_stream(peer, "files/blob.bin", window=8)
            | pipe.map(lambda item: item.data)
            | pipe.map(hash_chunk)
            | rxpipe.to_file(Path(tmp, "copy.bin"))
        )
        assert written == len(data) and digest.hexdigest() == hashlib.sha256(data).hexdigest()
        print(f"fetched {written} bytes over a WebSocket, sha256 {digest.hexdigest()[:16]}...")
        await peer.close()
        await service.close()


if __name__ == "__main__":
    asyncio.run(main())
