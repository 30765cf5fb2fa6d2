"""ReactiveX pipeline: fetch a file from a hub over WebRTC, compress it, write it.

    python examples/rx_fetch_compress.py

The file sink acknowledges each chunk once written; those acknowledgements are the
demand that travels back to the hub, so the hub reads its disk at the writer's pace.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import zlib
from pathlib import Path

import reactivex as rx
from reactivex import operators as ops

from rxchannel import reactive
from rxchannel.hub import Hub, HubLimits
from rxchannel.operators import windowed
from rxchannel.runtime import connect, serve


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "hub")
        root.mkdir()
        original = b"".join(b"reading %d: %s\n" % (i, os.urandom(4).hex().encode()) for i in range(40000))
        (root / "data.bin").write_bytes(original)
        hub = Hub(root, limits=HubLimits(chunk_size=64 * 1024))
        async with (
            await serve(hub.router, transport="webrtc") as service,  # loopback ICE, no STUN
            await connect(service.url) as peer,
        ):
            compressor = zlib.compressobj()
            sink = reactive.RxFileSink(Path(tmp, "data.bin.z"))
            reactive.request_stream(peer, "files/data.bin").pipe(
                windowed(4, acks=sink.acks),  # at most 4 chunks in flight, freed when written
                ops.map(lambda chunk: compressor.compress(chunk.data)),
                ops.concat(rx.defer(lambda _s: rx.of(compressor.flush()))),
            ).subscribe(sink)
            await sink.done

            compressed = Path(tmp, "data.bin.z").read_bytes()
            assert zlib.decompress(compressed) == original
            print(f"fetched {len(original)} bytes over WebRTC, wrote {len(compressed)} compressed bytes")


if __name__ == "__main__":
    asyncio.run(main())
