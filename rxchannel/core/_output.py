"""Frames waiting to be sent, in order, with REQUEST_N coalescing."""

from __future__ import annotations

from collections.abc import Callable

from ._frames import MAX_FRAME_SIZE, MAX_REQUEST_N, RequestNFrame, encode_frame, fit_frame

__all__ = ["Output"]


class Output:
    """The frames a connection has queued for its transport.

    A REQUEST_N queued right after another for the same stream merges into it, so credit
    goes out once per flush however many items were acknowledged; any other frame in
    between keeps them apart (order on the wire is what the peer acts on).
    """

    __slots__ = ("_frames", "_last_request_n", "add", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._frames: list[bytes] = []
        #: (stream id, n, frame) of the last REQUEST_N queued; it merges only while it is the last frame
        self._last_request_n: tuple[int, int, bytes] | None = None
        #: queue one frame (the list's own append: a PAYLOAD per item goes through here)
        self.add: Callable[[bytes], None] = self._frames.append

    def __bool__(self) -> bool:
        return bool(self._frames)

    def queue(self, frame: bytes) -> None:
        """Queue a frame that cannot be fragmented, made to fit the transport first (:func:`fit_frame`)."""
        if len(frame) > self.max_frame_size:
            frame = fit_frame(frame, self.max_frame_size)
        self.add(frame)

    def extend(self, frames: list[bytes]) -> None:
        self._frames += frames

    def put_first(self, frames: list[bytes]) -> None:
        """Queue ``frames`` ahead of everything queued (frames that had to go out first)."""
        self._frames[:0] = frames

    def request_n(self, stream_id: int, n: int) -> None:
        """Queue REQUEST_N(n) for ``stream_id``, merged into the previous frame if that is one for the same stream."""
        last, frames = self._last_request_n, self._frames
        if last is not None and last[0] == stream_id and frames and frames[-1] is last[2]:
            n = min(MAX_REQUEST_N, n + last[1])
            frames[-1] = frame = encode_frame(RequestNFrame(stream_id=stream_id, n=n))
        else:
            frame = encode_frame(RequestNFrame(stream_id=stream_id, n=n))
            frames.append(frame)
        self._last_request_n = (stream_id, n, frame)

    def drain(self) -> list[bytes]:
        """Every queued frame, oldest first; the queue is empty afterwards."""
        frames, self._frames = self._frames, []
        self.add = self._frames.append
        self._last_request_n = None
        return frames
