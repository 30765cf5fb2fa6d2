"""Protocol.md requirements that no other test pinned down, for the rows of ``docs/conformance.md``.

Sans-IO: real core connections, joined by ``transfer`` or fed hand-made frames; nothing
stands in for the code under test. Each test names the Protocol.md section it checks.

Tests marked ``xfail(strict=True)`` are known nonconformances (status "no" in the table).
Each asserts what the spec requires, so it starts passing, and so fails the suite, once
the behaviour is fixed: the table's row must then change with it.
"""

from __future__ import annotations

import struct

import pytest

from rxchannel.core import (
    MAX_FRAME_SIZE,
    MAX_REQUEST_N,
    ApplicationError,
    CancelFrame,
    ClosedResourceError,
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    CreditGranted,
    ErrorCode,
    ErrorFrame,
    Event,
    Frame,
    FrameDecodeError,
    FrameType,
    InboundCompleted,
    Interaction,
    KeepaliveFrame,
    LocalProtocolError,
    Manual,
    MetadataPushed,
    MetadataPushFrame,
    PayloadFrame,
    PayloadReceived,
    RequestFrame,
    RequestNFrame,
    RequestReceived,
    Role,
    SetupFrame,
    SetupReceived,
    StreamCancelled,
    StreamErrored,
    decode_frame,
    encode_frame,
)
from rxchannel.core._frames import LeaseFrame
from rxchannel.testing import transfer
from tests.support import demand_of

#: metadata the core passes through without parsing (no composite metadata, no routing)
RAW = ConnectionConfig(metadata_mime="application/octet-stream")
SETUP = SetupFrame(keepalive_ms=60_000, lifetime_ms=60_000, metadata_mime="x/y", data_mime="x/z")

M, F, C, N = 0x100, 0x80, 0x40, 0x20
IGNORE = 0x200
R = 0x80  # KEEPALIVE: respond; SETUP: resume
L = 0x40  # SETUP: lease
#: the flags each frame type defines (Protocol.md, "Frame Types"); any other bit is undefined
DEFINED_FLAGS = {
    FrameType.SETUP: M | R | L,
    FrameType.LEASE: M,
    FrameType.KEEPALIVE: R,
    FrameType.REQUEST_RESPONSE: M | F,
    FrameType.REQUEST_FNF: M | F,
    FrameType.REQUEST_STREAM: M | F,
    FrameType.REQUEST_CHANNEL: M | F | C,
    FrameType.REQUEST_N: 0,
    FrameType.CANCEL: 0,
    FrameType.PAYLOAD: M | F | C | N,
    FrameType.ERROR: 0,
    FrameType.METADATA_PUSH: M,
}


def pair(client_config: ConnectionConfig | None = None, server_config: ConnectionConfig | None = None):
    """A client and a server past SETUP, with nothing pending."""
    c = Connection(Role.CLIENT, client_config, now=0)
    s = Connection(Role.SERVER, server_config, now=0)
    transfer(c, s)
    c.events(), s.events()
    return c, s


def sent(conn: Connection) -> list[Frame]:
    return [decode_frame(f) for f in conn.frames_to_send()]


def inject(conn: Connection, *frames: Frame | bytes, now: float = 0.0) -> list[Event]:
    for frame in frames:
        conn.receive(frame if isinstance(frame, bytes) else encode_frame(frame), now)
    return conn.events()


def raw(stream_id: int, frame_type: int, flags: int, body: bytes = b"") -> bytes:
    """A frame built by hand: header (Protocol.md "Frame Header Format") and body."""
    return struct.pack(">IH", stream_id, frame_type << 10 | flags) + body


def header(frame: bytes) -> tuple[int, int, int]:
    """(stream id, frame type, flags) of an encoded frame."""
    stream_id, type_and_flags = struct.unpack_from(">IH", frame)
    return stream_id, type_and_flags >> 10, type_and_flags & 0x3FF


def exchange(a: Connection, b: Connection, wire: list[bytes]) -> None:
    """Deliver frames both ways until both are quiet, recording every frame in ``wire``."""
    for _ in range(100):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for frame in src.frames_to_send():
                wire.append(frame)
                dst.receive(frame, 0)
                moved = True
        if not moved:
            return
    raise AssertionError("the connections never went quiet")


def open_channel(c: Connection, s: Connection, n: int = 4) -> int:
    """A channel with ``n`` credits granted each way."""
    sid = c.request(Interaction.CHANNEL, data=b"first", policy=Manual(n), now=0)
    transfer(c, s)
    s.set_policy(sid, Manual(n), now=0)
    transfer(c, s)
    c.events(), s.events()
    return sid


def open_stream(c: Connection, s: Connection, n: int = 4) -> int:
    sid = c.request(Interaction.STREAM, data=b"q", initial_n=n, now=0)
    transfer(c, s)
    c.events(), s.events()
    return sid


# ---------------------------------------------------------------- "Max Frame Size"


def test_an_item_larger_than_the_maximum_frame_goes_out_in_frames_of_at_most_16_mib() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=1)
    item = bytes(range(256)) * (MAX_FRAME_SIZE // 256 + 4096)  # 1 MiB past the maximum frame
    s.send_payload(sid, item, complete=True)
    frames = s.frames_to_send()
    assert len(frames) == 2 and all(len(f) <= MAX_FRAME_SIZE for f in frames)
    for frame in frames:
        c.receive(frame, 0)
    assert c.events() == [PayloadReceived(stream_id=sid, data=item), InboundCompleted(stream_id=sid)]


def test_frames_over_16_mib_are_neither_decoded_nor_configured() -> None:
    oversize = raw(1, FrameType.PAYLOAD, N) + bytes(MAX_FRAME_SIZE - 5)
    assert len(oversize) == MAX_FRAME_SIZE + 1
    with pytest.raises(FrameDecodeError, match="exceeds the protocol maximum") as info:
        decode_frame(oversize)
    assert info.value.code == ErrorCode.CONNECTION_ERROR
    with pytest.raises(ValueError, match="max_frame_size"):
        ConnectionConfig(max_frame_size=MAX_FRAME_SIZE + 1)


# ---------------------------------------------------------------- "Frame Header Format"


def test_frames_rxchannel_sends_set_only_the_flags_their_type_defines() -> None:
    """Flags not defined for a frame type are sent as 0; a PAYLOAD has N or C (never neither);
    connection frames use stream 0. Checked on every frame of an exchange using every frame type."""
    cfg = ConnectionConfig(max_frame_size=64, metadata_mime="application/octet-stream", setup_metadata=b"sm")
    c = Connection(Role.CLIENT, cfg, now=0)
    s = Connection(Role.SERVER, cfg, now=0)
    wire: list[bytes] = []
    exchange(c, s, wire)
    c.handle_timer(cfg.keepalive_interval)  # a KEEPALIVE, and the server's answer
    c.metadata_push(b"push")
    rr = c.request(Interaction.RESPONSE, metadata=b"m", data=b"r" * 100, now=0)
    c.request(Interaction.FNF, data=b"fire", now=0)
    st = c.request(Interaction.STREAM, metadata=b"m", data=b"s", initial_n=3, now=0)
    ch = c.request(Interaction.CHANNEL, data=b"c", policy=Manual(2), now=0)
    gone = c.request(Interaction.STREAM, initial_n=1, now=0)
    exchange(c, s, wire)
    s.send_payload(rr, b"x" * 100, b"meta")
    s.send_payload(st, b"")
    s.send_payload(st, b"y" * 200, complete=True)
    s.set_policy(ch, Manual(2), now=0)
    c.cancel(gone)
    exchange(c, s, wire)
    c.send_payload(ch, b"up", complete=True)
    s.send_error(ch, ErrorCode.APPLICATION_ERROR, "boom")
    exchange(c, s, wire)
    types = set()
    for frame in wire:
        stream_id, frame_type, flags = header(frame)
        types.add(frame_type)
        assert flags & ~DEFINED_FLAGS[FrameType(frame_type)] == 0, (FrameType(frame_type).name, hex(flags))
        if frame_type == FrameType.PAYLOAD:
            assert flags & (N | C), "a PAYLOAD with neither NEXT nor COMPLETE"
        if frame_type == FrameType.METADATA_PUSH:
            assert flags & M
        if frame_type in (FrameType.SETUP, FrameType.KEEPALIVE, FrameType.METADATA_PUSH):
            assert stream_id == 0
    assert types == set(DEFINED_FLAGS) - {FrameType.LEASE}, "the exchange must use every frame type we send"


def _outcome(frame: bytes, to_client: bool) -> list[object]:
    """What a connection with an open channel (stream 1) does with ``frame``: its events and answers."""
    c, s = pair()
    sid = open_channel(c, s)
    assert sid == 1
    target = c if to_client else s
    before = target.ignored_frames
    target.receive(frame, 0)
    events = [
        (type(e).__name__, e.stream_id, getattr(e, "data", None), getattr(e, "complete", None)) for e in target.events()
    ]
    return [*events, *sent(target), ("closed", target.closed), ("ignored", target.ignored_frames - before)]


U32 = struct.Struct(">I")
UNDEFINED_FLAG_CASES = [
    # (name, frame type, defined flags, undefined flags, body, to the client?)
    ("PAYLOAD next", FrameType.PAYLOAD, N, IGNORE | 0x1F, b"item", True),
    ("PAYLOAD complete", FrameType.PAYLOAD, C, IGNORE | 0x1F, b"", True),
    ("REQUEST_N", FrameType.REQUEST_N, 0, 0x3FF, U32.pack(2), True),
    ("CANCEL", FrameType.CANCEL, 0, 0x3FF, b"", True),
    ("ERROR", FrameType.ERROR, 0, 0x3FF, U32.pack(0x201) + b"boom", True),
    ("KEEPALIVE", FrameType.KEEPALIVE, R, 0x37F, bytes(8) + b"data", True),
    ("REQUEST_STREAM with C", FrameType.REQUEST_STREAM, 0, C | 0x3F, U32.pack(1) + b"d", False),
    ("REQUEST_RESPONSE with C", FrameType.REQUEST_RESPONSE, 0, C | 0x3F, b"d", False),
    ("REQUEST_FNF with C", FrameType.REQUEST_FNF, 0, C | 0x3F, b"d", False),
    ("METADATA_PUSH", FrameType.METADATA_PUSH, M, 0xFF, b"meta", False),
]


@pytest.mark.parametrize(
    "name, frame_type, defined, undefined, body, to_client",
    UNDEFINED_FLAG_CASES,
    ids=[c[0] for c in UNDEFINED_FLAG_CASES],
)
def test_flag_bits_a_frame_type_does_not_define_are_ignored_on_reception(
    name: str, frame_type: FrameType, defined: int, undefined: int, body: bytes, to_client: bool
) -> None:
    """Handling the Unexpected: "Flag bits not specified for a particular frame MUST be ignored"."""
    sid = 3 if frame_type in (FrameType.REQUEST_STREAM, FrameType.REQUEST_RESPONSE, FrameType.REQUEST_FNF) else 1
    sid = 0 if frame_type in (FrameType.KEEPALIVE, FrameType.METADATA_PUSH) else sid
    clean = _outcome(raw(sid, frame_type, defined, body), to_client)
    flagged = _outcome(raw(sid, frame_type, defined | undefined, body), to_client)
    assert flagged == clean
    assert clean[0] != ("closed", False), "the clean frame must do something for the comparison to mean anything"


@pytest.mark.parametrize("frame_type", [0x3F, 0x30, 0x00], ids=["EXT", "unassigned", "RESERVED"])
def test_a_frame_type_we_do_not_know_is_ignored_with_the_ignore_flag_and_closes_the_connection_without(
    frame_type: int,
) -> None:
    """Frame Header Format, "Handling Ignore Flag"; EXT Frame (0x3F)."""
    body = U32.pack(7) + b"extension"  # an EXT frame's extended type, then its content
    c, s = pair()
    before = s.ignored_frames
    assert inject(s, raw(0, frame_type, IGNORE | M, body), raw(1, frame_type, IGNORE, body)) == []
    assert sent(s) == [] and not s.closed and s.ignored_frames == before + 2
    (closed,) = inject(s, raw(0, frame_type, M, body))
    assert isinstance(closed, ConnectionClosed) and s.closed
    (error,) = sent(s)
    assert isinstance(error, ErrorFrame) and (error.stream_id, error.code) == (0, ErrorCode.CONNECTION_ERROR)


# ---------------------------------------------------------------- "Metadata Optional Header"


def test_metadata_push_is_sent_on_stream_0_with_the_m_flag_and_no_metadata_length() -> None:
    c, s = pair()
    c.metadata_push(b"abc")
    (frame,) = c.frames_to_send()
    assert frame == b"\x00\x00\x00\x00" + (FrameType.METADATA_PUSH << 10 | M).to_bytes(2, "big") + b"abc"
    s.receive(frame, 0)
    assert s.events() == [MetadataPushed(metadata=b"abc")]


def test_a_frame_with_the_ignore_flag_and_a_wrong_metadata_length_does_not_close_the_connection() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    # PAYLOAD, I|M|N, metadata length 4096 with 3 bytes left
    inject(c, raw(sid, FrameType.PAYLOAD, IGNORE | M | N, b"\x00\x10\x00abc"))
    assert not c.closed
    assert not any(isinstance(f, ErrorFrame) and f.stream_id == 0 for f in sent(c))


# ---------------------------------------------------------------- "Stream Identifiers"


def test_client_ids_are_odd_from_1_server_ids_even_from_2_in_steps_of_2_and_never_reused() -> None:
    c, s = pair()
    first = c.request(Interaction.RESPONSE, data=b"a", now=0)
    transfer(c, s)
    s.send_payload(first, b"done")
    transfer(c, s)
    assert c.open_streams == s.open_streams == 0  # the first stream is over and forgotten
    ids = [first]
    ids.append(c.request(Interaction.RESPONSE, now=0))  # not 1 again
    ids.append(c.request(Interaction.FNF, now=0))  # a fire-and-forget uses an id too
    ids.append(c.request(Interaction.STREAM, initial_n=1, now=0))
    ids.append(c.request(Interaction.CHANNEL, initial_n=1, now=0))
    assert ids == [1, 3, 5, 7, 9]
    assert [f.stream_id for f in sent(c)] == [3, 5, 7, 9]
    assert [s.request(Interaction.RESPONSE, now=0) for _ in range(3)] == [2, 4, 6]
    assert [f.stream_id for f in sent(s)] == [2, 4, 6]


@pytest.mark.parametrize(
    "role, last", [(Role.CLIENT, MAX_REQUEST_N), (Role.SERVER, MAX_REQUEST_N - 1)], ids=["client", "server"]
)
def test_stream_ids_are_not_wrapped_past_2_31_minus_1_a_new_connection_is_needed(role: Role, last: int) -> None:
    c, s = pair()
    us = c if role is Role.CLIENT else s
    # reaching the last id for real takes 2^30 requests; start just before it
    us._streams._next_stream_id = last  # the stream table allocates the ids
    assert us.request(Interaction.FNF, now=0) == last
    with pytest.raises(LocalProtocolError, match=r"exhausted.*open a new one"):
        us.request(Interaction.FNF, now=0)
    assert [f.stream_id for f in sent(us)] == [last]


def test_a_responder_takes_a_stream_id_again_once_its_first_stream_is_over() -> None:
    """Stream Identifiers, "Lifetime": a Responder MUST assume Stream IDs will be re-used."""
    s = Connection(Role.SERVER, RAW, now=0)
    inject(s, SETUP)
    (first,) = inject(s, RequestFrame(stream_id=1, type=FrameType.REQUEST_RESPONSE, data=b"one"))
    s.send_payload(1, b"reply")
    sent(s)
    (again,) = inject(s, RequestFrame(stream_id=1, type=FrameType.REQUEST_RESPONSE, data=b"two"))
    assert isinstance(first, RequestReceived) and isinstance(again, RequestReceived)
    assert (again.stream_id, again.data) == (1, b"two") and not s.closed


# ---------------------------------------------------------------- SETUP and connection establishment


def test_the_client_sends_setup_first_on_stream_0_without_lease_or_resume_and_with_plain_ascii_mime_types() -> None:
    cfg = ConnectionConfig(metadata_mime="application/x.a+cbor", data_mime="text/plain")
    c = Connection(Role.CLIENT, cfg, now=0)
    c.request(Interaction.RESPONSE, data=b"early", now=0)  # a request made at once goes out after SETUP
    setup, request = c.frames_to_send()
    stream_id, frame_type, flags = header(setup)
    assert (stream_id, frame_type) == (0, FrameType.SETUP)
    assert flags & (R | L) == 0, "rxchannel neither resumes nor honours LEASE"
    # version 1.0, keepalive, lifetime, then each MIME type as its length and its ASCII bytes (no NUL)
    assert setup[6:10] == b"\x00\x01\x00\x00"
    mimes = setup[18:]
    assert mimes == b"\x14application/x.a+cbor\x0atext/plain"
    assert header(request)[:2] == (1, FrameType.REQUEST_RESPONSE)


def test_setup_on_a_stream_other_than_0_is_refused_with_invalid_setup() -> None:
    s = Connection(Role.SERVER, now=0)
    (closed,) = inject(s, SetupFrame(keepalive_ms=1000, lifetime_ms=1000, metadata_mime="", data_mime="", stream_id=1))
    (error,) = sent(s)
    assert isinstance(error, ErrorFrame) and (error.stream_id, error.code) == (0, ErrorCode.INVALID_SETUP)
    assert isinstance(closed, ConnectionClosed) and s.closed


def test_the_mime_types_are_not_interpreted_unless_the_client_chose_composite_metadata() -> None:
    """SETUP Frame: "The protocol implementation MUST NOT interpret the MIME type itself"."""
    cfg = ConnectionConfig(metadata_mime="application/x.netflix+cbor", data_mime="text/whatever; v=2")
    c = Connection(Role.CLIENT, cfg, now=0)
    s = Connection(Role.SERVER, now=0)  # the server itself would use composite metadata
    _, (setup,) = transfer(c, s)
    assert isinstance(setup, SetupReceived)
    assert (setup.metadata_mime, setup.data_mime) == ("application/x.netflix+cbor", "text/whatever; v=2")
    sid = c.request(Interaction.RESPONSE, metadata=b"\x05\xff", data=b"d", now=0)  # not composite metadata
    _, (request,) = transfer(c, s)
    assert request == RequestReceived(stream_id=sid, interaction=Interaction.RESPONSE, metadata=b"\x05\xff", data=b"d")


@pytest.mark.parametrize(
    "options",
    [{"keepalive_interval": 0.0004}, {"max_lifetime": 2**31 / 1000 + 1}],
    ids=["sub-millisecond keepalive", "lifetime past 2^31-1 ms"],
)
def test_setup_keepalive_and_lifetime_are_positive_31_bit_values_for_any_accepted_config(options: dict) -> None:
    try:
        config = ConnectionConfig(**options)
    except ValueError:
        return  # refusing such a config is conformant too
    (setup,) = Connection(Role.CLIENT, config, now=0).frames_to_send()
    keepalive, lifetime = struct.unpack_from(">II", setup, 10)
    assert 0 < keepalive <= MAX_REQUEST_N and 0 < lifetime <= MAX_REQUEST_N


def test_a_setup_with_a_non_ascii_mime_type_is_accepted_or_refused_as_a_setup() -> None:
    s = Connection(Role.SERVER, now=0)
    setup = encode_frame(SetupFrame(keepalive_ms=1000, lifetime_ms=1000, metadata_mime="text/e", data_mime="x"))
    events = inject(s, setup.replace(b"text/e", b"text/\xe9"))  # one non-ASCII byte (Latin-1 e-acute)
    if s.closed:
        (error,) = sent(s)
        assert isinstance(error, ErrorFrame) and error.stream_id == 0
        assert error.code in (ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP)
    else:
        assert isinstance(events[0], SetupReceived)


@pytest.mark.parametrize(
    "code",
    [ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP, ErrorCode.REJECTED_SETUP, ErrorCode.REJECTED_RESUME],
    ids=lambda code: code.name,
)
def test_a_server_ignores_setup_error_codes(code: ErrorCode) -> None:
    c, s = pair()
    before = s.ignored_frames
    assert inject(s, ErrorFrame(stream_id=0, code=code, message="?")) == []
    assert not s.closed and s.ignored_frames == before + 1 and sent(s) == []


def test_a_client_ignores_setup_error_codes_once_its_setup_was_accepted() -> None:
    c, s = pair()
    sid = c.request(Interaction.RESPONSE, data=b"q", now=0)
    transfer(c, s)
    s.send_payload(sid, b"a")
    events, _ = transfer(c, s)  # a response: the client knows its SETUP was accepted
    assert [type(e) for e in events] == [PayloadReceived, InboundCompleted]
    for code in (ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP, ErrorCode.REJECTED_SETUP):
        assert inject(c, ErrorFrame(stream_id=0, code=code, message="late")) == []
    assert not c.closed


# ---------------------------------------------------------------- ERROR frame and error codes


def test_error_data_is_utf8_without_a_terminating_nul() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    s.send_error(sid, ErrorCode.APPLICATION_ERROR, "naïve ✓")
    (frame,) = s.frames_to_send()
    assert frame == raw(sid, FrameType.ERROR, 0, U32.pack(0x201) + "naïve ✓".encode())


def test_stream_level_error_codes_are_only_sent_on_streams_and_connection_errors_on_stream_0() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    for code in ErrorCode:
        if code.is_connection_level:
            with pytest.raises(LocalProtocolError, match="not a stream-level code"):
                s.send_error(sid, code, "no")
            with pytest.raises(ValueError, match="not a stream-level code"):
                ApplicationError("no", code)
    assert sent(s) == []
    s.receive(b"\x00\x01", 0)  # garbage: a connection error
    (error,) = sent(s)
    assert isinstance(error, ErrorFrame) and (error.stream_id, error.code) == (0, ErrorCode.CONNECTION_ERROR)


def test_connection_close_lets_outstanding_streams_finish() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=2)
    inject(c, ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_CLOSE, message="draining"))
    assert not c.closed
    with pytest.raises(ClosedResourceError, match="CONNECTION_CLOSE"):
        c.request(Interaction.RESPONSE, data=b"new", now=0)  # no new streams meanwhile
    s.send_payload(sid, b"last", complete=True)
    events, _ = transfer(c, s)
    assert events[:2] == [PayloadReceived(stream_id=sid, data=b"last"), InboundCompleted(stream_id=sid)]
    assert c.closed  # once the last stream is over


# ---------------------------------------------------------------- KEEPALIVE frame


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER])
def test_a_keepalive_with_respond_is_answered_without_respond_echoing_its_data(role: Role) -> None:
    c, s = pair()
    us = c if role is Role.CLIENT else s
    assert inject(us, KeepaliveFrame(respond=True, position=0, data=b"ping \x00\xff")) == []
    assert sent(us) == [KeepaliveFrame(respond=False, position=0, data=b"ping \x00\xff", stream_id=0)]


def test_a_keepalive_without_respond_is_not_answered() -> None:
    c, s = pair()
    for us in (c, s):
        assert inject(us, KeepaliveFrame(respond=False, data=b"pong")) == []
        assert sent(us) == [] and not us.closed


def test_the_client_sends_a_keepalive_every_interval_and_a_live_server_keeps_it_open() -> None:
    c, s = pair(ConnectionConfig(keepalive_interval=1, max_lifetime=2.5))
    for t in range(1, 11):  # ten intervals: four times the lifetime
        assert c.get_timer() == t
        c.handle_timer(float(t))
        (ping,) = c.frames_to_send()
        assert decode_frame(ping) == KeepaliveFrame(respond=True)
        s.receive(ping, float(t))
        (pong,) = s.frames_to_send()
        c.receive(pong, float(t))  # any frame from the server shows it is alive
    assert not c.closed and not s.closed


# ---------------------------------------------------------------- REQUEST_RESPONSE


def test_a_response_is_one_payload_with_next_and_complete() -> None:
    c, s = pair()
    sid = c.request(Interaction.RESPONSE, data=b"q", now=0)
    transfer(c, s)
    s.send_payload(sid, b"answer")
    (frame,) = s.frames_to_send()
    assert header(frame) == (sid, FrameType.PAYLOAD, N | C)
    assert s.open_streams == 0, "sending the response ends the stream on the responder"


def test_a_cancelled_request_response_gets_no_response() -> None:
    c, s = pair()
    sid = c.request(Interaction.RESPONSE, data=b"q", now=0)
    transfer(c, s)
    c.cancel(sid)
    assert c.open_streams == 0, "sending CANCEL ends the stream on the requester"
    _, events = transfer(c, s)
    assert events == [StreamCancelled(stream_id=sid)]
    assert not s.can_send(sid)
    with pytest.raises(LocalProtocolError):
        s.send_payload(sid, b"too late")
    assert s.frames_to_send() == [] and s.open_streams == 0


# ---------------------------------------------------------------- REQUEST_FNF


@pytest.mark.parametrize("why", ["over max_streams", "malformed composite metadata"])
def test_a_fire_and_forget_that_cannot_be_processed_is_dropped_without_an_answer(why: str) -> None:
    """Request Fire-n-Forget: best effort, "MAY not be processed"; there is no stream to answer on."""
    if why == "over max_streams":
        c, s = pair(server_config=ConnectionConfig(max_streams=1))
        open_stream(c, s)
        c.request(Interaction.FNF, data=b"one too many", now=0)
    else:
        c, s = pair()  # composite metadata, the default
        c.request(Interaction.FNF, metadata=b"\x05\xff", now=0)  # an entry that runs past its end
    c_events, s_events = transfer(c, s)
    assert c_events == s_events == [] and not s.closed and s.open_streams == (1 if why == "over max_streams" else 0)


# ---------------------------------------------------------------- REQUEST_STREAM and REQUEST_CHANNEL


@pytest.mark.parametrize("n", [0, MAX_REQUEST_N + 1])
@pytest.mark.parametrize("kind", [FrameType.REQUEST_STREAM, FrameType.REQUEST_CHANNEL], ids=["stream", "channel"])
def test_an_initial_request_n_outside_1_to_2_31_minus_1_is_refused_with_invalid(kind: FrameType, n: int) -> None:
    s = Connection(Role.SERVER, RAW, now=0)
    inject(s, SETUP)
    assert inject(s, RequestFrame(stream_id=1, type=kind, initial_n=n, data=b"d")) == []
    (error,) = sent(s)
    assert isinstance(error, ErrorFrame) and (error.stream_id, error.code) == (1, ErrorCode.INVALID)
    assert s.open_streams == 0 and not s.closed


# ---------------------------------------------------------------- REQUEST_CHANNEL


def test_a_channel_requester_sends_one_request_channel_and_then_only_payloads() -> None:
    c, s = pair()
    wire: list[bytes] = []
    sid = c.request(Interaction.CHANNEL, data=b"1", policy=Manual(1), now=0)
    exchange(c, s, wire)
    s.set_policy(sid, Manual(3), now=0)
    exchange(c, s, wire)
    c.send_payload(sid, b"2")
    c.send_payload(sid, b"3", complete=True)
    exchange(c, s, wire)
    from_requester = [decode_frame(f) for f in wire if header(f)[1] != FrameType.REQUEST_N]
    assert [type(f) for f in from_requester] == [RequestFrame, PayloadFrame, PayloadFrame]
    assert [f.data for f in from_requester] == [b"1", b"2", b"3"]  # type: ignore[union-attr]
    assert [e.data for e in s.events() if isinstance(e, PayloadReceived)] == [b"2", b"3"]


@pytest.mark.parametrize("where", ["on REQUEST_CHANNEL", "on a PAYLOAD"])
def test_a_channel_requester_sends_no_payload_after_its_complete(where: str) -> None:
    c, s = pair()
    if where == "on REQUEST_CHANNEL":
        sid = c.request(Interaction.CHANNEL, data=b"only", policy=Manual(1), complete=True, now=0)
        transfer(c, s)
    else:
        sid = open_channel(c, s)
        c.send_payload(sid, b"last", complete=True)
    assert not c.can_send(sid)
    with pytest.raises(LocalProtocolError, match="not open for sending"):
        c.send_payload(sid, b"more")
    with pytest.raises(LocalProtocolError, match="not open for sending"):
        c.send_complete(sid)
    _, events = transfer(c, s)
    assert not [e for e in events if isinstance(e, PayloadReceived) and e.data == b"more"]


def test_an_error_on_a_channel_ends_both_directions_on_both_sides() -> None:
    c, s = pair()
    sid = open_channel(c, s)
    assert c.send_error(sid, ErrorCode.APPLICATION_ERROR, "requester failed")
    assert c.stream(sid) is None, "sending ERROR ends the stream"
    (errored,) = inject(s, *c.frames_to_send())
    assert isinstance(errored, StreamErrored) and errored.error.code == ErrorCode.APPLICATION_ERROR  # type: ignore[attr-defined]
    assert s.stream(sid) is None and not s.can_send(sid), "receiving ERROR ends the stream, both halves"
    ignored = s.ignored_frames
    assert inject(s, PayloadFrame(stream_id=sid, data=b"late"), RequestNFrame(stream_id=sid, n=1)) == []
    assert s.ignored_frames == ignored + 2


def test_a_channel_requester_that_sent_cancel_sends_nothing_more() -> None:
    c, s = pair()
    sid = open_channel(c, s)
    c.cancel(sid)
    assert not c.can_send(sid)
    assert c.stream(sid) is None


def test_a_channel_responder_that_received_cancel_has_ended_the_stream() -> None:
    c, s = pair()
    sid = open_channel(c, s)
    inject(s, CancelFrame(stream_id=sid))
    assert s.stream(sid) is None
    assert s.demand(sid) is None


def test_a_fragmented_request_channel_with_complete_reaches_the_responder_complete() -> None:
    cfg = ConnectionConfig(max_frame_size=64, metadata_mime="application/octet-stream")
    c, s = pair(cfg, cfg)
    sid = c.request(Interaction.CHANNEL, data=b"x" * 300, policy=Manual(1), complete=True, now=0)
    frames = c.frames_to_send()
    assert len(frames) > 1 and header(frames[-1])[2] & C
    (request,) = inject(s, *frames)
    assert isinstance(request, RequestReceived) and request.data == b"x" * 300
    assert request.complete
    assert s.demand(sid) is None, "the requester's half is over"


# ---------------------------------------------------------------- PAYLOAD frame


def test_a_payload_with_neither_next_nor_complete_is_invalid() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    (errored,) = inject(c, raw(sid, FrameType.PAYLOAD, 0, b"what"))
    assert isinstance(errored, StreamErrored) and errored.error.code == ErrorCode.INVALID  # type: ignore[attr-defined]
    (error,) = sent(c)
    assert isinstance(error, ErrorFrame) and (error.stream_id, error.code) == (sid, ErrorCode.INVALID)
    assert "neither NEXT nor COMPLETE" in error.message


def test_an_empty_payload_with_next_is_an_item_both_ways() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    s.send_payload(sid, b"")
    (frame,) = s.frames_to_send()
    assert frame == raw(sid, FrameType.PAYLOAD, N)
    assert inject(c, frame, PayloadFrame(stream_id=sid, data=b"", metadata=b"")) == [
        PayloadReceived(stream_id=sid, data=b""),
        PayloadReceived(stream_id=sid, data=b"", metadata=b""),
    ]


@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "last-fragment"])
def test_a_payload_with_follows_and_complete_ignores_follows(fragmented: bool) -> None:
    """Handling the Unexpected: "A PAYLOAD with both F and C flags set, implicitly ignores the F flag"."""
    c, s = pair()
    sid = open_stream(c, s)
    head = [PayloadFrame(stream_id=sid, data=b"fir", follows=True)] if fragmented else []
    events = inject(c, *head, PayloadFrame(stream_id=sid, data=b"st", follows=True, complete=True))
    data = b"first" if fragmented else b"st"
    assert events == [PayloadReceived(stream_id=sid, data=data), InboundCompleted(stream_id=sid)]
    assert c.stream(sid) is None


# ---------------------------------------------------------------- METADATA_PUSH frame


def test_metadata_push_on_a_stream_other_than_0_is_ignored() -> None:
    c, s = pair()
    open_stream(c, s)
    for us in (c, s):
        before = us.ignored_frames
        assert inject(us, MetadataPushFrame(metadata=b"m", stream_id=1)) == []
        assert not us.closed and sent(us) == [] and us.ignored_frames == before + 1


# ---------------------------------------------------------------- fragmentation and reassembly


def test_a_fragmented_request_is_its_request_frame_then_payload_frames_with_follows_on_all_but_the_last() -> None:
    cfg = ConnectionConfig(max_frame_size=64, metadata_mime="application/octet-stream")
    c, s = pair(cfg, cfg)
    metadata, data = bytes(range(100)), bytes(range(200))
    sid = c.request(Interaction.STREAM, metadata=metadata, data=data, initial_n=7, now=0)
    frames = [decode_frame(f) for f in c.frames_to_send()]
    first, rest = frames[0], frames[1:]
    assert isinstance(first, RequestFrame) and first.type is FrameType.REQUEST_STREAM and first.initial_n == 7
    assert rest and all(isinstance(f, PayloadFrame) and f.stream_id == sid for f in rest)
    assert [f.follows for f in frames] == [True] * (len(frames) - 1) + [False]  # type: ignore[union-attr]
    assert not any(f.complete for f in rest)  # type: ignore[union-attr]
    assert b"".join(f.metadata or b"" for f in frames) == metadata  # type: ignore[union-attr]
    assert b"".join(f.data for f in frames) == data  # type: ignore[union-attr]
    data_seen = False
    for f in frames:  # metadata is sent completely before data
        assert not (data_seen and f.metadata), "metadata after data"  # type: ignore[union-attr]
        data_seen = data_seen or bool(f.data)  # type: ignore[union-attr]


# ---------------------------------------------------------------- flow control


def test_a_stream_starved_of_request_n_is_never_ended_by_the_protocol() -> None:
    """Handling the Unexpected: "Lack of REQUEST_N frames that stops a stream is an application
    concern and SHALL NOT be handled by the protocol"."""
    c, s = pair(ConnectionConfig(keepalive_interval=1, max_lifetime=3))
    sid = open_stream(c, s, n=1)
    s.send_payload(sid, b"the only credited item")
    items, _ = transfer(c, s)
    assert items == [PayloadReceived(stream_id=sid, data=b"the only credited item")]
    for t in range(1, 31):  # ten lifetimes without a REQUEST_N; keepalives keep the connection up
        c.handle_timer(float(t))
        s.handle_timer(float(t))
        for frame in c.frames_to_send():
            s.receive(frame, float(t))
        for frame in s.frames_to_send():
            c.receive(frame, float(t))
    assert not c.closed and not s.closed
    assert [e for e in c.events() + s.events() if e.stream_id == sid] == []
    assert s.send_window(sid) == 0 and s.can_send(sid) and c.demand(sid) is not None
    demand_of(c, sid).request(1, 31.0)
    _, events = transfer(c, s)
    assert events == [CreditGranted(stream_id=sid, n=1)]


# ---------------------------------------------------------------- LEASE


def test_a_lease_frame_is_ignored_since_no_lease_was_negotiated() -> None:
    c, s = pair()
    for us in (c, s):
        before = us.ignored_frames
        assert inject(us, LeaseFrame(ttl_ms=1000, count=0)) == []
        assert not us.closed and sent(us) == [] and us.ignored_frames == before + 1
    sid = c.request(Interaction.RESPONSE, now=0)  # a LEASE of 0 requests changes nothing: no lease is honoured
    _, events = transfer(c, s)
    assert [type(e) for e in events] == [RequestReceived] and events[0].stream_id == sid
