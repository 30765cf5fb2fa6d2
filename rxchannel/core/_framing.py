"""The length prefix of RSocket's TCP binding: a 24-bit big-endian frame length."""

from __future__ import annotations

from ._errors import ErrorCode, RemoteProtocolError
from ._frames import MAX_FRAME_SIZE

__all__ = ["LengthPrefixDecoder", "prefix"]


def prefix(frame: bytes) -> bytes:
    """The 3-byte length prefix for ``frame``."""
    return len(frame).to_bytes(3, "big")


class LengthPrefixDecoder:
    """Cuts a byte stream into frames. Holds at most one incomplete frame.

    ``max_frame_size`` bounds what a peer can make us buffer: a prefix announcing more
    is a protocol error, raised before anything is allocated.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE):
        self._buf = bytearray()
        self._max = max_frame_size

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every frame now complete, in order.

        Raises:
            RemoteProtocolError: a length prefix exceeds the limit (CONNECTION_ERROR).
        """
        buf = self._buf
        buf += data
        frames = []
        pos, end = 0, len(buf)
        while end - pos >= 3:
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if length > self._max:
                raise RemoteProtocolError(
                    f"length prefix announces a {length}-byte frame; the limit is {self._max}",
                    code=ErrorCode.CONNECTION_ERROR,
                )
            if end - pos - 3 < length:
                break
            frames.append(bytes(buf[pos + 3 : pos + 3 + length]))
            pos += 3 + length
        if pos:
            del buf[:pos]
        return frames
