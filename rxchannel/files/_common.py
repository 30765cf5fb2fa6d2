"""What the file modules share: the chunk size, integrity errors, item metadata, hashing."""

from __future__ import annotations

import hashlib
import os
from typing import Any, BinaryIO

from rxchannel.core import RxChannelError, parse_request_metadata
from rxchannel.runtime import Payload

__all__ = ["CHUNK_SIZE", "FETCH_WINDOW", "HASH_BLOCK", "IntegrityError", "hash_prefix", "item_info", "sha256_file"]

#: Default chunk: 64 KiB of data per item.
CHUNK_SIZE = 64 * 1024
#: Chunks in flight on a fetch when no window is given: 128 x 64 KiB = 8 MiB, what a worker
#: holds at most when its disk is the slowest stage. Smaller windows leave a direct (TCP)
#: path idle between grants: the kernel's own socket buffers hold several MiB, and a
#: window below them makes the connection application-limited, which BBR answers by
#: pacing the next burst (docs/benchmarks.md, "The window on a direct path").
FETCH_WINDOW = 128
HASH_BLOCK = 1 << 20


class IntegrityError(RxChannelError):
    """The received file does not match what the sender announced (size or SHA-256)."""


def item_info(payload: Payload) -> dict[str, Any]:
    """The JSON information in an item's metadata (empty when it has none).

    Raises:
        MetadataError: the metadata is not composite metadata with a JSON object.
    """
    if not payload.metadata:
        return {}
    _, info = parse_request_metadata(payload.metadata)
    return info


def hash_prefix(handle: BinaryIO, length: int, digest: Any) -> None:
    """Feed the first ``length`` bytes of ``handle`` to ``digest``."""
    handle.seek(0)
    left = length
    while left > 0:
        block = handle.read(min(HASH_BLOCK, left))
        if not block:
            raise IntegrityError(f"the file is shorter than the {length} bytes to resume from")
        digest.update(block)
        left -= len(block)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
