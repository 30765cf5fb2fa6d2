"""Vectors for the browser's per-chunk verification (``tests/js/vectors/manifest.json``): BLAKE3
digests from the Python ``blake3`` package, and a manifest from :func:`compute_manifest`."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import blake3

from rxchannel.files import compute_manifest

# around the 64-byte block and 1 KiB chunk boundaries, and trees of several levels
LENGTHS = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 4096, 5121, 8192, 9000, 31745]


def manifest() -> dict[str, Any]:
    rng = random.Random(30)
    digests = []
    for n in LENGTHS:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        digests.append({"hex": data.hex(), "blake3": blake3.blake3(data).hexdigest()})
    content = bytes(rng.getrandbits(8) for _ in range(10_000))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "f.bin"
        path.write_bytes(content)
        made, _ = compute_manifest(path, base=4096)  # three chunks, the last one short
    return {"blake3": digests, "file": content.hex(), "manifest": made.to_json()}
