"""What a hub allows: :class:`HubLimits`, one object instead of a constructor argument per
limit, and :data:`HUB_CONNECTION`, the connection settings a hub and its workers use.

The CLI reads its defaults from here (``rxchannel serve --help`` shows them), so a library
hub and a command-line hub start from the same numbers (docs/reliability.md, "Limits").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rxchannel.core import ConnectionConfig
from rxchannel.fanout.broadcast import check_broadcast
from rxchannel.files._common import CHUNK_SIZE

__all__ = ["HUB_CONNECTION", "HubLimits"]

#: A hub faces strangers: a connection that goes quiet is found out within 30 s (a keepalive
#: each 10 s), and a peer holds at most 256 streams open on it. The library's own defaults
#: (:class:`~rxchannel.core.ConnectionConfig`: 20 s, 90 s, 1024) suit peers that trust each other.
HUB_CONNECTION = ConnectionConfig(keepalive_interval=10.0, max_lifetime=30.0, max_streams=256)


@dataclass(frozen=True, kw_only=True)
class HubLimits:
    """What one hub allows, its peers together and each of them.

    Attributes:
        chunk_size: bytes per item of a file stream.
        max_buffer: the largest file served whole on ``buffers/``.
        max_list: the largest page of a listing.
        max_open_files: files open for streams at once, all connections together.
        max_files_per_connection: of which one connection may hold.
        max_buffers: whole-file buffers being read or sent at once.
        max_upload: the largest push accepted, in bytes.
        max_upload_per_address: bytes one address may hold in the inbox (finished and
            unfinished pushes together) when the hub has no secret; None: no such budget
            (a hub whose peers are authenticated).
        upload_idle: seconds a push may send nothing before it is failed and its partial
            file removed.
        stream_idle: seconds a file stream may wait for demand before, when the open-file
            budget is full, a new stream takes its place (it fails with REJECTED on its next
            pull: resume it from its offset).
        min_free: bytes that must stay free on the inbox's disk after an upload.
        share_join_window: seconds after a shared read's first worker during which others
            join it at its first chunk.
        share_max_lag: chunks a shared read may be ahead of its slowest worker.
        share_patience: seconds in all a worker may hold a shared read back before it is
            detached (it goes on from ``files/``).

    Raises:
        ValueError: a size or count that is not positive, a negative time.
    """

    chunk_size: int = CHUNK_SIZE
    max_buffer: int = 16 << 20
    max_list: int = 10_000
    max_open_files: int = 1024
    max_files_per_connection: int = 16
    max_buffers: int = 4
    max_upload: int = 1 << 30
    max_upload_per_address: int | None = 1 << 30
    upload_idle: float = 120.0
    stream_idle: float = 5.0
    min_free: int = 256 << 20
    share_join_window: float = 0.5
    share_max_lag: int = 64
    share_patience: float = 2.0

    def __post_init__(self) -> None:
        positive = ("chunk_size", "max_buffer", "max_list", "max_open_files", "max_files_per_connection")
        for name in (*positive, "max_buffers", "max_upload"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HubLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.max_upload_per_address is not None and self.max_upload_per_address <= 0:
            raise ValueError("HubLimits.max_upload_per_address must be positive, or None for no budget")
        for name in ("upload_idle", "stream_idle", "min_free"):
            if getattr(self, name) < 0:
                raise ValueError(f"HubLimits.{name} must not be negative, got {getattr(self, name)!r}")
        check_broadcast(self.share_max_lag, self.share_patience, self.share_join_window)

    def replace(self, **changes: object) -> HubLimits:
        """A copy with ``changes`` (checked as a new one is)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


#: the names :class:`HubLimits` holds (the old keyword arguments of ``Hub``)
LIMIT_NAMES = frozenset(field.name for field in dataclasses.fields(HubLimits))
