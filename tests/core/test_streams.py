"""Every state of a stream's halves against every frame the peer can send, on real connections.

The expected outcomes are written here from Protocol.md ("Stream Sequences and
Lifetimes", "Handling the Unexpected"), independently of the connection's transition
tables, and every reachable combination is tried:

* a PAYLOAD for our inbound half: delivered while it is open; ignored after we cancelled
  it (it was in flight); after the sender completed it, a violation (ERROR[INVALID]);
* REQUEST_N or CANCEL for our outbound half: acted on while it is open; ignored once we
  completed it or it was cancelled (they race our COMPLETE or their own CANCEL);
* a frame for a half the interaction does not have (a PAYLOAD to a request-stream
  responder, REQUEST_N to a request-stream requester, ...): ERROR[INVALID];
* a channel's CANCEL ends the whole stream ("Request Channel": terminated on the requester
  that sends it, on the responder that receives it): after ours, every frame is for an
  unknown stream (ignored); theirs ends our inbound half too, with an error for whoever
  reads it, and items still in flight are ignored.
"""

from __future__ import annotations

import itertools

import pytest

from rxchannel.core import (
    CancelFrame,
    Connection,
    CreditGranted,
    ErrorCode,
    ErrorFrame,
    InboundCompleted,
    Interaction,
    Manual,
    PayloadFrame,
    PayloadReceived,
    RequestNFrame,
    Role,
    StreamCancelled,
    StreamCancelledError,
    StreamErrored,
    decode_frame,
    encode_frame,
)
from rxchannel.testing import transfer

STATES = ["open", "done", "cancelled"]
FRAMES = ["next", "complete", "request_n", "cancel"]


def frame(kind: str, sid: int) -> bytes:
    return encode_frame(
        {
            "next": PayloadFrame(stream_id=sid, data=b"x"),
            "complete": PayloadFrame(stream_id=sid, next=False, complete=True),
            "request_n": RequestNFrame(stream_id=sid, n=1),
            "cancel": CancelFrame(stream_id=sid),
        }[kind]
    )


def channel_in(inbound: str, outbound: str, we_request: bool) -> tuple[Connection, int]:
    """Our side of a channel whose inbound and outbound halves are in the given states."""
    c, s = Connection(Role.CLIENT, now=0), Connection(Role.SERVER, now=0)
    transfer(c, s)
    sid = c.request(Interaction.CHANNEL, data=b"first", policy=Manual(4), now=0)
    transfer(c, s)
    s.set_policy(sid, Manual(4), now=0)
    transfer(c, s)
    us, them = (c, s) if we_request else (s, c)
    if inbound == "done":
        them.send_complete(sid)
    elif inbound == "cancelled":
        us.cancel(sid)
    if outbound == "done":
        us.send_complete(sid)
    elif outbound == "cancelled":
        them.cancel(sid)
    transfer(c, s)
    us.events(), them.events()  # drain
    return us, sid


def expected(kind: str, inbound: str, outbound: str, we_request: bool) -> str:
    """What the spec says happens (see the module docstring)."""
    if we_request and inbound == "cancelled":
        return "ignore"  # we sent CANCEL: the stream is over on our side, an unknown one
    if not we_request and outbound == "cancelled" and inbound == "open":
        inbound = "cancelled"  # they sent CANCEL: our inbound half ended with it
    if kind in ("next", "complete"):
        return {"open": "act", "cancelled": "ignore", "done": "invalid"}[inbound]
    if kind == "cancel" and outbound == "open" and not we_request and inbound == "open":
        return "end"  # their CANCEL ends both halves of our side
    return "act" if outbound == "open" else "ignore"


CASES = [
    (inbound, outbound, kind, we_request)
    for inbound, outbound, kind, we_request in itertools.product(STATES, STATES, FRAMES, [True, False])
    if "open" in (inbound, outbound)  # otherwise the stream is over and forgotten: an unknown stream
]


@pytest.mark.parametrize("inbound, outbound, kind, we_request", CASES)
def test_a_channel_half_in_every_state_against_every_frame(
    inbound: str, outbound: str, kind: str, we_request: bool
) -> None:
    us, sid = channel_in(inbound, outbound, we_request)
    ignored = us.ignored_frames
    us.receive(frame(kind, sid), 0)
    events, sent = us.events(), [decode_frame(f) for f in us.frames_to_send()]
    outcome = expected(kind, inbound, outbound, we_request)
    if outcome == "end":
        (ended,) = events
        assert isinstance(ended, StreamErrored) and isinstance(ended.error, StreamCancelledError)
        assert sent == [] and us.stream(sid) is None
    elif outcome == "invalid":
        assert [type(e) for e in events] == [StreamErrored]
        assert len(sent) == 1 and isinstance(sent[0], ErrorFrame) and sent[0].code == ErrorCode.INVALID
        assert us.stream(sid) is None
    elif outcome == "ignore":
        assert events == [] and sent == [] and us.ignored_frames == ignored + 1
    else:
        wanted = {
            "next": [PayloadReceived],
            "complete": [InboundCompleted],
            "request_n": [CreditGranted],
            "cancel": [StreamCancelled],
        }[kind]
        assert [type(e) for e in events] == wanted and sent == []


@pytest.mark.parametrize(
    "interaction, we_request, kind",
    [
        (Interaction.STREAM, False, "next"),  # a request-stream responder receives no items
        (Interaction.STREAM, False, "complete"),
        (Interaction.STREAM, True, "request_n"),  # a request-stream requester sends no items
        (Interaction.STREAM, True, "cancel"),
        (Interaction.RESPONSE, True, "request_n"),
        (Interaction.RESPONSE, True, "cancel"),
        (Interaction.RESPONSE, False, "next"),
    ],
)
def test_a_frame_for_a_half_the_interaction_lacks_is_invalid(
    interaction: Interaction, we_request: bool, kind: str
) -> None:
    c, s = Connection(Role.CLIENT, now=0), Connection(Role.SERVER, now=0)
    transfer(c, s)
    sid = c.request(interaction, initial_n=4, now=0)
    transfer(c, s)
    us = c if we_request else s
    us.events()
    us.receive(frame(kind, sid), 0)
    (error,) = [decode_frame(f) for f in us.frames_to_send()]
    assert isinstance(error, ErrorFrame) and error.code == ErrorCode.INVALID and "not allowed" in error.message
    assert [type(e) for e in us.events()] == [StreamErrored]
