"""Fragmentation and reassembly (Protocol.md, "Fragmentation And Reassembly").

A request or payload larger than the frame limit is split: metadata first, then data;
the first frame keeps its type (REQUEST_* or PAYLOAD), the rest are PAYLOAD frames, and
every frame but the last has the F flag. A fragmented item still counts as one credit.
"""

from __future__ import annotations

from ._errors import ErrorCode, RemoteProtocolError
from ._frames import FrameType, RequestFrame, encode_frame, encode_payload

__all__ = ["MIN_FRAME_SIZE", "Budget", "Reassembly", "encode_item", "split"]

#: Smallest frame limit we accept; the header plus fields must leave room for content.
MIN_FRAME_SIZE = 64
_HEADER = 6
_METADATA_LENGTH = 3


def split(
    metadata: bytes | None, data: bytes, max_frame_size: int, first_extra: int = 0
) -> list[tuple[bytes | None, bytes]]:
    """Cut (metadata, data) into per-frame parts that each fit ``max_frame_size``.

    ``first_extra`` counts fixed fields of the first frame (4 for the initial n of
    REQUEST_STREAM/REQUEST_CHANNEL). Returns one part when no fragmentation is needed.
    """
    total = _HEADER + first_extra + len(data)
    if metadata is not None:
        total += _METADATA_LENGTH + len(metadata)
    if total <= max_frame_size:
        return [(metadata, data)]
    parts: list[tuple[bytes | None, bytes]] = []
    m_pos, d_pos = 0, 0
    m_len = -1 if metadata is None else len(metadata)
    extra = first_extra
    while True:
        room = max_frame_size - _HEADER - extra
        extra = 0
        part_meta: bytes | None = None
        if metadata is not None and (m_pos < m_len or (m_len == 0 and not parts)):
            room -= _METADATA_LENGTH
            part_meta = metadata[m_pos : m_pos + room]
            m_pos += len(part_meta)
            room -= len(part_meta)
        part_data = b""
        if room > 0 and (metadata is None or m_pos >= m_len):
            part_data = data[d_pos : d_pos + room]
            d_pos += len(part_data)
        parts.append((part_meta, part_data))
        if (metadata is None or m_pos >= m_len) and d_pos >= len(data):
            return parts


def encode_item(
    stream_id: int,
    first_type: FrameType,
    metadata: bytes | None,
    data: bytes,
    limit: int,
    *,
    initial_n: int = 0,
    complete: bool = False,
    next: bool = True,
) -> list[bytes]:
    """The frames of one request or payload, fragmented to ``limit`` bytes per frame.

    The first frame is the request (or PAYLOAD) itself; later fragments are PAYLOAD
    frames; every frame but the last has F, and only the last may carry C.
    """
    is_request = first_type is not FrameType.PAYLOAD
    if not is_request and len(data) + (len(metadata) if metadata is not None else 0) + 64 < limit:
        return [encode_payload(stream_id, data, metadata, next=next, complete=complete)]
    extra = 4 if first_type in (FrameType.REQUEST_STREAM, FrameType.REQUEST_CHANNEL) else 0
    parts = split(metadata, data, limit, extra)
    last = len(parts) - 1
    frames = []
    for i, (part_meta, part_data) in enumerate(parts):
        follows = i < last
        if i == 0 and is_request:
            frames.append(
                encode_frame(
                    RequestFrame(
                        stream_id=stream_id,
                        type=first_type,
                        metadata=part_meta,
                        data=part_data,
                        initial_n=initial_n,
                        follows=follows,
                        complete=complete and not follows,
                    )
                )
            )
        else:
            frames.append(
                encode_payload(
                    stream_id, part_data, part_meta, next=next, complete=complete and not follows, follows=follows
                )
            )
    return frames


class Budget:
    """Bytes that several reassemblies draw from (one connection's, or a whole server's).

    Reassembly must assume an infinite stream (Protocol.md "Handling the Unexpected"), so
    what a peer can make us hold is capped per item, per connection and per server.
    """

    __slots__ = ("limit", "name", "used")

    def __init__(self, limit: int, name: str):
        if limit <= 0:
            raise ValueError(f"{name} must be positive")
        self.limit = limit
        self.name = name
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give_back(self, n: int) -> None:
        self.used -= n


class Reassembly:
    """Collects the fragments of one item, refusing to grow past ``limit`` bytes or its budgets."""

    __slots__ = ("_budgets", "_data", "_limit", "_metadata", "_size", "next")

    def __init__(self, limit: int, budgets: tuple[Budget, ...] = (), *, next: bool = True):
        self._metadata: list[bytes] | None = None
        self._data: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._budgets = budgets
        self.next = next

    def add(self, stream_id: int, metadata: bytes | None, data: bytes) -> None:
        """Append one fragment.

        Raises:
            RemoteProtocolError: the item would exceed the per-item limit or a budget
                (REJECTED); what was held is given back.
        """
        n = len(data) + (len(metadata) if metadata else 0)
        refused = f"the item's limit of {self._limit} bytes" if self._size + n > self._limit else None
        taken: list[Budget] = []
        for budget in self._budgets:
            if refused is None and not budget.take(n):
                refused = f"{budget.name} ({budget.limit} bytes held for unfinished fragmented items)"
            elif refused is None:
                taken.append(budget)
        if refused is not None:
            for budget in taken:
                budget.give_back(n)
            self.discard()
            raise RemoteProtocolError(
                f"fragmented payload refused: it would exceed {refused}", code=ErrorCode.REJECTED, stream_id=stream_id
            )
        self._size += n
        if metadata is not None:
            if self._metadata is None:
                self._metadata = []
            self._metadata.append(metadata)
        if data:
            self._data.append(data)

    @property
    def size(self) -> int:
        return self._size

    def result(self) -> tuple[bytes | None, bytes]:
        """The whole item; what it held is given back to its budgets."""
        metadata = None if self._metadata is None else b"".join(self._metadata)
        data = b"".join(self._data)
        self.discard()
        return metadata, data

    def discard(self) -> None:
        """Drop what is held and give it back to the budgets. Idempotent."""
        for budget in self._budgets:
            budget.give_back(self._size)
        self._size = 0
        self._metadata = None
        self._data = []
