"""Per-stream state: two half-directions and one transition table for received frames.

Each stream has an *inbound* half (items we receive) and an *outbound* half (items we
send). Which halves exist, and which frames the peer may send on a stream, depend on the
interaction model and on our role in it; :data:`RECEIVE_RULES` is that whole contract
(Protocol.md, "Stream Sequences and Lifetimes"). A frame with no entry is a protocol
violation on that stream.
"""

from __future__ import annotations

from enum import Enum

from ._credit import Manual, ReceiveCredit, ReplenishPolicy, SendCredit
from ._events import Interaction
from ._fragments import Reassembly
from ._frames import FrameType, RequestFrame

__all__ = ["RECEIVE_RULES", "Action", "Half", "Stream"]


class Half(Enum):
    """State of one direction of a stream."""

    ABSENT = "absent"  # the interaction has no such direction (request-stream requester's outbound)
    OPEN = "open"
    DONE = "done"  # completed or errored: anything more from the peer is a violation
    CANCELLED = "cancelled"  # cancelled: late frames from the peer are expected and dropped


class Action(Enum):
    PAYLOAD = "payload"  # an item (or fragment) for our inbound half
    CREDIT = "credit"  # REQUEST_N for our outbound half
    CANCEL = "cancel"  # the peer cancels our outbound half
    ERROR = "error"  # the peer ends the whole stream


_R, _S, _C = Interaction.RESPONSE, Interaction.STREAM, Interaction.CHANNEL
_P, _N, _X, _E = FrameType.PAYLOAD, FrameType.REQUEST_N, FrameType.CANCEL, FrameType.ERROR

#: (interaction, we are the requester, received frame type) -> what it means.
RECEIVE_RULES: dict[tuple[Interaction, bool, FrameType], Action] = {
    # request-response: one PAYLOAD or ERROR back; the requester may CANCEL
    (_R, True, _P): Action.PAYLOAD,
    (_R, True, _E): Action.ERROR,
    (_R, False, _X): Action.CANCEL,
    (_R, False, _E): Action.ERROR,
    # request-stream: PAYLOAD* then COMPLETE or ERROR; the requester sends REQUEST_N, CANCEL
    (_S, True, _P): Action.PAYLOAD,
    (_S, True, _E): Action.ERROR,
    (_S, False, _N): Action.CREDIT,
    (_S, False, _X): Action.CANCEL,
    (_S, False, _E): Action.ERROR,
    # request-channel: symmetric once opened
    (_C, True, _P): Action.PAYLOAD,
    (_C, True, _N): Action.CREDIT,
    (_C, True, _X): Action.CANCEL,
    (_C, True, _E): Action.ERROR,
    (_C, False, _P): Action.PAYLOAD,
    (_C, False, _N): Action.CREDIT,
    (_C, False, _X): Action.CANCEL,
    (_C, False, _E): Action.ERROR,
}

#: Which halves an interaction opens, by role: (inbound, outbound).
_HALVES: dict[tuple[Interaction, bool], tuple[Half, Half]] = {
    (_R, True): (Half.OPEN, Half.ABSENT),
    (_R, False): (Half.ABSENT, Half.OPEN),
    (_S, True): (Half.OPEN, Half.ABSENT),
    (_S, False): (Half.ABSENT, Half.OPEN),
    (_C, True): (Half.OPEN, Half.OPEN),
    (_C, False): (Half.OPEN, Half.OPEN),
    (Interaction.FNF, True): (Half.ABSENT, Half.ABSENT),
    (Interaction.FNF, False): (Half.ABSENT, Half.ABSENT),  # only while its fragments arrive
}


class Stream:
    """One stream's state. Owned by the connection; read it through the connection's methods."""

    __slots__ = (
        "id",
        "inbound",
        "interaction",
        "outbound",
        "partial",
        "pending_request",
        "policy",
        "receive_credit",
        "requester",
        "send_credit",
    )

    def __init__(self, stream_id: int, interaction: Interaction, requester: bool, policy: ReplenishPolicy | None):
        self.id = stream_id
        self.interaction = interaction
        self.requester = requester
        self.inbound, self.outbound = _HALVES[(interaction, requester)]
        self.send_credit = SendCredit()
        self.receive_credit = ReceiveCredit()
        self.policy: ReplenishPolicy = policy if policy is not None else Manual()
        self.partial: Reassembly | None = None
        #: the first frame of a request whose fragments are still arriving
        self.pending_request: RequestFrame | None = None
        if interaction == Interaction.RESPONSE:
            # a request-response carries exactly one item each way: credit is implicit
            self.send_credit.granted(1)
            self.receive_credit.granted(1)

    @property
    def finished(self) -> bool:
        return self.inbound is not Half.OPEN and self.outbound is not Half.OPEN

    def rule(self, frame_type: FrameType) -> Action | None:
        return RECEIVE_RULES.get((self.interaction, self.requester, frame_type))

    def __repr__(self) -> str:
        role = "requester" if self.requester else "responder"
        return (
            f"Stream({self.id}, {self.interaction.name}, {role}, in={self.inbound.value}, "
            f"out={self.outbound.value}, {self.send_credit!r}, {self.receive_credit!r})"
        )
