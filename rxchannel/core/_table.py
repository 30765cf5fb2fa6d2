"""The streams of one connection, by id: opening and forgetting them, and every change of
a half-state the connection makes on its own (each through the half's transition table,
:mod:`._streams`); the peer's frames change halves through the stream's own ``on_*`` methods.
"""

from __future__ import annotations

from ._credit import InboundDemand
from ._events import Interaction
from ._frames import MAX_REQUEST_N
from ._streams import Half, Signal, Stream

__all__ = ["StreamTable"]


class StreamTable:
    """The open streams of one connection (see :class:`~rxchannel.core.Connection`)."""

    __slots__ = ("_streams", "get")

    def __init__(self) -> None:
        self._streams: dict[int, Stream] = {}
        #: the stream with this id, or None (the dict's own get: every received frame looks one up)
        self.get = self._streams.get

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def ids(self) -> list[int]:
        return list(self._streams)

    # ------------------------------------------------------------------ open and forget

    def open(self, s: Stream) -> None:
        self._streams[s.id] = s

    def forget(self, s: Stream) -> None:
        """``s`` is over: its inbound half grants nothing more, and it leaves the table."""
        s.end_inbound()
        self._streams.pop(s.id, None)

    def abandon(self, s: Stream) -> None:
        """A request whose fragments were still arriving ends, never announced (its bytes go back)."""
        s.drop_partial()
        self._streams.pop(s.id, None)

    def clear(self) -> None:
        """The connection is over: every stream is."""
        for s in self._streams.values():
            s.end_inbound()
        self._streams.clear()

    # ------------------------------------------------------------------ our own half-state changes

    def finish_outbound(self, s: Stream) -> None:
        """We completed ``s``'s outbound half (our last item, or a channel request marked complete)."""
        s.local(True, Signal.FINISH)

    def complete_inbound(self, s: Stream) -> None:
        """The peer's request already completed the half we receive on (a channel's C flag)."""
        s.local(False, Signal.COMPLETE)

    def stop(self, s: Stream) -> bool:
        """We cancel ``s``'s inbound half; False when there was nothing to cancel.

        A channel's requester cancelling ends the whole stream (Protocol.md "Request
        Channel": "Upon sending a CANCEL, the stream is terminated on the Requester"): its
        outbound half ends as if the peer had cancelled it.
        """
        if not s.local(False, Signal.STOP):
            return False
        s.end_inbound()
        if s.requester and s.interaction is Interaction.CHANNEL:
            s.local(True, Signal.CANCEL)
        return True

    # ------------------------------------------------------------------ queries

    @property
    def reassembly_bytes(self) -> int:
        return sum(s.partial.size for s in self._streams.values() if s.partial is not None)

    def demand(self, stream_id: int) -> InboundDemand | None:
        s = self._streams.get(stream_id)
        return s.demand if s is not None and s.inbound is Half.OPEN else None

    def send_window(self, stream_id: int) -> int:
        s = self._streams.get(stream_id)
        if s is None or s.outbound is not Half.OPEN:
            return 0
        return MAX_REQUEST_N if s.send_credit.unbounded else s.send_credit.available

    def can_send(self, stream_id: int) -> bool:
        s = self._streams.get(stream_id)
        return s is not None and s.outbound is Half.OPEN
