"""Per-stream state: two half-directions, each driven by one transition table.

A stream has an *inbound* half (items we receive) and an *outbound* half (items we send).
Which halves an interaction has depends on the interaction model and on our role in it
(:data:`HALVES`, Protocol.md "Stream Sequences and Lifetimes"). Every frame the peer sends
on a stream, and every local action, is a :class:`Signal` for one half; the half's table
says what it becomes and what the connection must do (:class:`Outcome`). A pair missing
from a table is a protocol violation by the peer (or, for a local signal, a misuse of the
API), as in h2's state machine. ERROR ends both halves at once and is handled by the
connection.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from ._credit import InboundDemand, SendCredit
from ._errors import ErrorCode, LocalProtocolError, RemoteProtocolError, StreamCancelledError
from ._events import (
    CreditGranted,
    Event,
    InboundCompleted,
    Interaction,
    PayloadReceived,
    StreamCancelled,
    StreamErrored,
)
from ._fragments import Reassembly
from ._frames import MAX_REQUEST_N, RequestFrame

__all__ = ["HALVES", "INBOUND", "OUTBOUND", "Half", "Outcome", "Signal", "Stream", "transition"]


class Half(Enum):
    """State of one direction of a stream."""

    __hash__ = object.__hash__  # members are singletons: identity hashing, in C (table lookups are hot)

    ABSENT = "absent"  # the interaction has no such direction (a request-stream requester's outbound)
    OPEN = "open"
    DONE = "done"  # completed: anything more from the peer is a violation
    CANCELLED = "cancelled"  # cancelled: late frames are expected and dropped


class Signal(Enum):
    """What happens to a half: frames from the peer, and our own actions."""

    __hash__ = object.__hash__

    NEXT = "next"  # peer: a PAYLOAD item on our inbound half
    COMPLETE = "complete"  # peer: the C flag on our inbound half
    CREDIT = "credit"  # peer: REQUEST_N for our outbound half
    CANCEL = "cancel"  # peer: CANCEL of our outbound half
    STOP = "stop"  # local: we cancel our inbound half
    SEND = "send"  # local: we send an item on our outbound half
    FINISH = "finish"  # local: we complete our outbound half


class Outcome(Enum):
    ACT = "act"  # do what the signal says
    IGNORE = "ignore"  # a frame that raced a cancel or a completion: drop it (Handling the Unexpected)
    NOOP = "noop"  # a repeated local action (cancel is idempotent, Reactive Streams §3.5, §3.7)
    VIOLATION = "violation"  # the peer broke the protocol: ERROR[INVALID] on this stream
    REFUSE = "refuse"  # a local action the half cannot take: LocalProtocolError


_A, _O, _D, _X = Half.ABSENT, Half.OPEN, Half.DONE, Half.CANCELLED
_ACT, _IGN, _NOOP, _BAD, _REF = Outcome.ACT, Outcome.IGNORE, Outcome.NOOP, Outcome.VIOLATION, Outcome.REFUSE

#: The half we receive on: (state, signal) -> (next state, outcome).
INBOUND: dict[tuple[Half, Signal], tuple[Half, Outcome]] = {
    (_O, Signal.NEXT): (_O, _ACT),
    (_O, Signal.COMPLETE): (_D, _ACT),
    (_O, Signal.STOP): (_X, _ACT),
    (_X, Signal.NEXT): (_X, _IGN),  # in flight when we cancelled
    (_X, Signal.COMPLETE): (_X, _IGN),
    (_X, Signal.STOP): (_X, _NOOP),
    (_D, Signal.STOP): (_D, _NOOP),  # cancel after completion does nothing (§3.7)
    (_A, Signal.STOP): (_A, _NOOP),
    # (_D, NEXT|COMPLETE): PAYLOAD after the sender completed; (_A, NEXT|COMPLETE): a PAYLOAD
    # this role may not receive: violations, by absence
}

#: The half we send on: (state, signal) -> (next state, outcome).
OUTBOUND: dict[tuple[Half, Signal], tuple[Half, Outcome]] = {
    (_O, Signal.CREDIT): (_O, _ACT),
    (_O, Signal.CANCEL): (_X, _ACT),
    (_O, Signal.SEND): (_O, _ACT),
    (_O, Signal.FINISH): (_D, _ACT),
    (_D, Signal.CREDIT): (_D, _IGN),  # REQUEST_N racing our COMPLETE
    (_D, Signal.CANCEL): (_D, _IGN),
    (_X, Signal.CREDIT): (_X, _IGN),
    (_X, Signal.CANCEL): (_X, _IGN),
    (_D, Signal.SEND): (_D, _REF),
    (_D, Signal.FINISH): (_D, _REF),
    (_X, Signal.SEND): (_X, _REF),
    (_X, Signal.FINISH): (_X, _REF),
    (_A, Signal.SEND): (_A, _REF),
    (_A, Signal.FINISH): (_A, _REF),
    # (_A, CREDIT|CANCEL): REQUEST_N or CANCEL this role may not receive: a violation, by absence
}


def transition(
    table: dict[tuple[Half, Signal], tuple[Half, Outcome]], state: Half, signal: Signal
) -> tuple[Half, Outcome]:
    """Look up one transition; a missing pair is a violation (peer) or a refusal (local)."""
    found = table.get((state, signal))
    if found is not None:
        return found
    return state, Outcome.REFUSE if signal in (Signal.STOP, Signal.SEND, Signal.FINISH) else Outcome.VIOLATION


_R, _S, _C, _F = Interaction.RESPONSE, Interaction.STREAM, Interaction.CHANNEL, Interaction.FNF

#: Which halves an interaction opens, by role (we are the requester?): (inbound, outbound).
HALVES: dict[tuple[Interaction, bool], tuple[Half, Half]] = {
    (_R, True): (_O, _A),
    (_R, False): (_A, _O),
    (_S, True): (_O, _A),
    (_S, False): (_A, _O),
    (_C, True): (_O, _O),
    (_C, False): (_O, _O),
    (_F, True): (_A, _A),
    (_F, False): (_A, _A),  # kept only while its fragments arrive
}


class Stream:
    """One stream's state. Owned by the connection; read it through the connection's methods."""

    __slots__ = (
        "demand",
        "id",
        "inbound",
        "interaction",
        "outbound",
        "partial",
        "pending_request",
        "requester",
        "send_credit",
    )

    def __init__(self, stream_id: int, interaction: Interaction, requester: bool):
        self.id = stream_id
        self.interaction = interaction
        self.requester = requester
        self.inbound, self.outbound = HALVES[(interaction, requester)]
        self.send_credit = SendCredit()
        #: demand for the inbound half (None when there is none)
        self.demand: InboundDemand | None = None
        self.partial: Reassembly | None = None
        #: the first frame of a request whose fragments are still arriving
        self.pending_request: RequestFrame | None = None
        if interaction is Interaction.RESPONSE:
            # a request-response carries exactly one item each way: credit is implicit
            self.send_credit.granted(1)

    @property
    def finished(self) -> bool:
        return self.inbound is not Half.OPEN and self.outbound is not Half.OPEN

    # ------------------------------------------------------------ frames from the peer

    def on_payload(
        self,
        metadata: bytes | None,
        data: bytes,
        follows: bool,
        complete: bool,
        next: bool,
        now: float,
        new_partial: Callable[[], Reassembly],
    ) -> list[Event] | None:
        """A PAYLOAD (or a fragment of one) for our inbound half.

        Returns the events it causes, or None when the frame is to be ignored (it raced
        our CANCEL).

        Raises:
            RemoteProtocolError: a violation (ERROR[INVALID], or REJECTED past the
                reassembly limit); the stream must end.
        """
        more = follows and not complete  # C with F: F is ignored (Handling the Unexpected)
        if self.partial is None:
            is_item = next or more
            signal = Signal.COMPLETE if complete and not is_item else Signal.NEXT
            if not self._apply(False, signal, "PAYLOAD"):
                return None
            if not is_item and not complete:
                raise self._invalid("PAYLOAD with neither NEXT nor COMPLETE set")
            if is_item:
                assert self.demand is not None
                if not self.demand.received(len(data) + (len(metadata) if metadata else 0), now):
                    granted = self.demand.granted_total
                    raise self._invalid(
                        f"PAYLOAD past credit: {granted} item(s) were granted and all were used "
                        "(Reactive Streams rule 1.1)"
                    )
                if more:
                    self.partial = new_partial()
                    self.partial.add(self.id, metadata, data)
                    return []
        else:
            is_item = True
            self.partial.add(self.id, metadata, data)
            if more:
                return []
            metadata, data = self.partial.result()
            self.partial = None
        events: list[Event] = []
        if is_item:
            events.append(PayloadReceived(stream_id=self.id, data=data, metadata=metadata))
        if complete or self.interaction is Interaction.RESPONSE:
            if is_item:
                self._apply(False, Signal.COMPLETE, "PAYLOAD")
            self.end_inbound()
            events.append(InboundCompleted(stream_id=self.id))
        return events

    def on_credit(self, n: int) -> list[Event] | None:
        """REQUEST_N for our outbound half. Raises RemoteProtocolError for a violation."""
        if not self._apply(True, Signal.CREDIT, "REQUEST_N"):
            return None
        if not 1 <= n <= MAX_REQUEST_N:
            raise self._invalid(f"REQUEST_N of {n} is outside 1..{MAX_REQUEST_N}")
        self.send_credit.granted(n)
        return [CreditGranted(stream_id=self.id, n=n)]

    def on_cancel(self) -> list[Event] | None:
        """The peer cancels our outbound half. Raises RemoteProtocolError for a violation.

        A channel's requester cancelling ends the whole stream on the responder (Protocol.md
        "Request Channel": "Upon receiving a CANCEL, the stream is terminated on the
        Responder"): its inbound half ends too, with :class:`StreamCancelledError`, so a
        handler reading it never takes a cut-off input for a whole one.
        """
        if not self._apply(True, Signal.CANCEL, "CANCEL"):
            return None
        if self.interaction is Interaction.CHANNEL and not self.requester and self.inbound is Half.OPEN:
            self._transition(False, Signal.STOP)  # the whole channel ends here
            self.end_inbound()
            error = StreamCancelledError("the requester cancelled the channel")
            return [StreamErrored(stream_id=self.id, error=error)]
        return [StreamCancelled(stream_id=self.id)]

    def _apply(self, outbound: bool, signal: Signal, what: str) -> bool:
        """Apply one of the peer's signals to a half: True to act on it, False to ignore it."""
        state, outcome = self._transition(outbound, signal)
        if outcome is Outcome.VIOLATION:
            if state is Half.DONE:
                raise self._invalid(f"{what} after the sender completed this direction")
            role = "responder" if self.requester else "requester"
            raise self._invalid(f"{what} is not allowed from the {role} of a {self.interaction.name} stream")
        return outcome is Outcome.ACT

    def _transition(self, outbound: bool, signal: Signal) -> tuple[Half, Outcome]:
        """Look ``signal`` up in one half's table; on ACT the half takes its next state.
        Returns the state it was in, and the outcome."""
        state = self.outbound if outbound else self.inbound
        new, outcome = transition(OUTBOUND if outbound else INBOUND, state, signal)
        if outcome is Outcome.ACT:
            if outbound:
                self.outbound = new
            else:
                self.inbound = new
        return state, outcome

    def _invalid(self, message: str) -> RemoteProtocolError:
        return RemoteProtocolError(message, code=ErrorCode.INVALID, stream_id=self.id)

    # ------------------------------------------------------------ our own actions

    def local(self, outbound: bool, signal: Signal) -> bool:
        """Apply one of our own signals: True to act on it, False for a no-op (a repeated cancel).

        Raises:
            LocalProtocolError: the half cannot take it (sending on a completed half, ...).
        """
        state, outcome = self._transition(outbound, signal)
        if outcome is Outcome.REFUSE:
            raise LocalProtocolError(f"stream {self.id} is not open for sending (outbound is {state.value})")
        return outcome is Outcome.ACT

    def drop_partial(self) -> None:
        """Drop an item whose fragments are still arriving (its bytes go back to the budgets)."""
        if self.partial is not None:
            self.partial.discard()
            self.partial = None

    def end_inbound(self) -> None:
        """Our inbound half is over: drop a partial item; the demand grants nothing more."""
        self.drop_partial()
        if self.demand is not None:
            self.demand.end()

    def __repr__(self) -> str:
        role = "requester" if self.requester else "responder"
        return (
            f"Stream({self.id}, {self.interaction.name}, {role}, in={self.inbound.value}, "
            f"out={self.outbound.value}, {self.send_credit!r}, {self.demand!r})"
        )
