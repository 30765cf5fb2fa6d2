"""The Observer half: a local file, compressed, subscribed into a hub's inbox over WebRTC.

    python examples/rx_remote_sink_compress.py

``reactive.remote_sink(peer, "push/...")`` is an Observer whose ``demand`` is the credit the
hub grants; ``request_n(sink.demand)`` makes the local file source read a chunk only when
the hub asked for one, so the hub's disk writes pace this process's disk reads.

Demand counts items, so what sits between the source and the sink maps one item to one
item: the compressor's final flush rides with the file's last chunk (``chunk.last``), not
as an extra item the hub never asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path

from reactivex import operators as ops

import rxchannel as rxc
from rxchannel import reactive
from rxchannel.hub import Hub
from rxchannel.operators import request_n


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        original = b"".join(b"line %d: %s\n" % (i, os.urandom(4).hex().encode()) for i in range(50_000))
        Path(tmp, "log.txt").write_bytes(original)
        Path(tmp, "hub").mkdir()
        hub = Hub(Path(tmp, "hub"), inbox=Path(tmp, "inbox"))
        server = await rxc.serve(hub.router, transport="webrtc")  # loopback ICE, no STUN
        peer = await rxc.connect(server.url)

        compressor, sent = zlib.compressobj(), hashlib.sha256()

        def compress(chunk: rxc.Payload) -> bytes:
            out = compressor.compress(chunk.data) + (compressor.flush() if chunk.last else b"")
            sent.update(out)
            return out

        sink = reactive.remote_sink(peer, "push/log.txt.z")
        reactive.file_source(Path(tmp, "log.txt")).pipe(
            request_n(sink.demand),  # read only what the hub asked for
            ops.map(compress),
        ).subscribe(sink)
        (receipt,) = await sink.done
        stored = Path(tmp, "inbox", "log.txt.z").read_bytes()
        assert json.loads(receipt.data)["sha256"] == sent.hexdigest(), "the hub stored what we sent"
        assert zlib.decompress(stored) == original
        print(f"pushed {len(original)} bytes as {len(stored)} compressed over WebRTC; receipt {receipt.data.decode()}")
        await peer.close()
        await server.close()


if __name__ == "__main__":
    asyncio.run(main())
