"""Frames waiting to be sent, in order, with REQUEST_N coalescing."""

from __future__ import annotations

from ._frames import MAX_REQUEST_N, RequestNFrame, encode_frame

__all__ = ["Output"]


class Output:
    """The frames a connection has queued for its transport.

    A REQUEST_N queued right after another for the same stream merges into it, so credit
    goes out once per flush however many items were acknowledged; any other frame in
    between keeps them apart (order on the wire is what the peer acts on).
    """

    __slots__ = ("_frames", "_last_request_n")

    def __init__(self) -> None:
        self._frames: list[bytes] = []
        #: (stream id, n) of a REQUEST_N that is the last queued frame
        self._last_request_n: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self._frames)

    def add(self, frame: bytes) -> None:
        self._frames.append(frame)
        self._last_request_n = None

    def extend(self, frames: list[bytes]) -> None:
        self._frames += frames
        self._last_request_n = None

    def request_n(self, stream_id: int, n: int) -> None:
        """Queue REQUEST_N(n) for ``stream_id``, merged into the previous frame if that is one for the same stream."""
        last = self._last_request_n
        if last is not None and last[0] == stream_id:
            n = min(MAX_REQUEST_N, n + last[1])
            self._frames[-1] = encode_frame(RequestNFrame(stream_id=stream_id, n=n))
        else:
            self._frames.append(encode_frame(RequestNFrame(stream_id=stream_id, n=n)))
        self._last_request_n = (stream_id, n)

    def drain(self) -> list[bytes]:
        """Every queued frame, oldest first; the queue is empty afterwards."""
        frames, self._frames = self._frames, []
        self._last_request_n = None
        return frames
