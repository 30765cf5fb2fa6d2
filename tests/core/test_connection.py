"""The sans-IO connection: two Connections joined by ``transfer`` (no sockets, no clock).

Tests named ``test_rule_*`` check the flow-control rules of docs/architecture.md ("Flow control: two levels").
"""

from __future__ import annotations

import pytest

from rxchannel.core import (
    MAX_REQUEST_N,
    ClosedResourceError,
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionLostError,
    CreditGranted,
    ErrorCode,
    FrameType,
    InboundCompleted,
    Interaction,
    LocalProtocolError,
    Manual,
    MetadataPushed,
    PayloadReceived,
    RemoteError,
    RemoteProtocolError,
    RequestReceived,
    Role,
    SetupReceived,
    SetupRejectedError,
    StreamCancelled,
    StreamErrored,
    Window,
    decode_frame,
    encode_frame,
    request_metadata,
)
from rxchannel.core._frames import (
    CancelFrame,
    ErrorFrame,
    KeepaliveFrame,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    SetupFrame,
)
from rxchannel.testing import LivelockError, transfer
from tests.support import demand_of


def pair(client_config: ConnectionConfig | None = None, server_config: ConnectionConfig | None = None):
    c = Connection(Role.CLIENT, client_config, now=0.0)
    s = Connection(Role.SERVER, server_config, now=0.0)
    _, s_events = transfer(c, s)
    assert isinstance(s_events[0], SetupReceived)
    return c, s


def sent(conn: Connection) -> list[object]:
    return [decode_frame(f) for f in conn.frames_to_send()]


def sent_after(a: Connection, b: Connection) -> list[object]:
    """Deliver what ``a`` queued to ``b``; return what ``b`` queued in answer."""
    for frame in a.frames_to_send():
        b.receive(frame, 0.0)
    return sent(b)


def inject(conn: Connection, *frames: object) -> list[object]:
    for frame in frames:
        conn.receive(encode_frame(frame), 0.0)
    return conn.events()


def open_stream(c: Connection, s: Connection, n: int = 2) -> int:
    sid = c.request(Interaction.STREAM, now=0, metadata=b"", data=b"q", policy=Manual(n))
    _, ev = transfer(c, s)
    assert isinstance(ev[0], RequestReceived) and ev[0].initial_n == n
    return sid


# ---------------------------------------------------------------- setup


def test_client_sends_setup_first_with_its_keepalive_and_mime_types() -> None:
    c = Connection(Role.CLIENT, ConnectionConfig(keepalive_interval=2, max_lifetime=7), now=0)
    (setup,) = sent(c)
    assert isinstance(setup, SetupFrame)
    assert (setup.keepalive_ms, setup.lifetime_ms, setup.version) == (2000, 7000, (1, 0))
    assert setup.metadata_mime == "message/x.rsocket.composite-metadata.v0"
    assert setup.data_mime == "application/octet-stream"


@pytest.mark.parametrize(
    "first, code",
    [
        (RequestNFrame(stream_id=1, n=1), ErrorCode.INVALID_SETUP),
        (SetupFrame(keepalive_ms=1, lifetime_ms=1, metadata_mime="", data_mime="", version=(2, 0)), 0x002),
        (SetupFrame(keepalive_ms=1, lifetime_ms=1, metadata_mime="", data_mime="", lease=True), 0x002),
        (SetupFrame(keepalive_ms=1, lifetime_ms=1, metadata_mime="", data_mime="", resume_token=b"t"), 0x003),
        (SetupFrame(keepalive_ms=0, lifetime_ms=1, metadata_mime="", data_mime=""), 0x001),
    ],
    ids=["request-before-setup", "version-2", "lease", "resume", "zero-keepalive"],
)
def test_server_refuses_bad_setup_with_the_spec_error_code_and_closes(first: object, code: int) -> None:
    s = Connection(Role.SERVER, now=0)
    events = inject(s, first)
    (error,) = sent(s)
    assert isinstance(error, ErrorFrame) and error.stream_id == 0 and error.code == code and error.message
    assert isinstance(events[-1], ConnectionClosed) and s.closed


def test_a_request_before_setup_is_refused_naming_the_frame_and_its_stream() -> None:
    """When a SETUP is lost (issue 23: a transport that dropped the first messages), the refusal
    says what arrived first, so the log shows the race instead of a generic protocol error."""
    s = Connection(Role.SERVER, now=0)
    inject(s, RequestFrame(stream_id=1, type=FrameType.REQUEST_RESPONSE, data=b"x"))
    (error,) = sent(s)
    assert isinstance(error, ErrorFrame) and error.code == ErrorCode.INVALID_SETUP
    assert "got REQUEST_RESPONSE on stream 1" in error.message and "SETUP was lost" in error.message


def test_setup_check_rejects_with_rejected_setup_and_the_client_sees_why() -> None:
    cfg = ConnectionConfig(setup_check=lambda setup: None if setup.data == b"secret" else "bad credentials")
    c = Connection(Role.CLIENT, now=0)
    s = Connection(Role.SERVER, cfg, now=0)
    c_events, _ = transfer(c, s)
    (closed,) = c_events
    assert isinstance(closed, ConnectionClosed)
    assert isinstance(closed.error, SetupRejectedError) and closed.error.code == ErrorCode.REJECTED_SETUP
    assert "bad credentials" in str(closed.error)


def test_second_setup_and_setup_to_a_client_are_ignored() -> None:
    c, s = pair()
    setup = SetupFrame(keepalive_ms=1, lifetime_ms=1, metadata_mime="", data_mime="")
    assert inject(s, setup) == [] and not s.closed
    assert inject(c, setup) == [] and not c.closed
    assert s.ignored_frames == 1 and c.ignored_frames == 1


def test_server_cannot_request_before_setup() -> None:
    s = Connection(Role.SERVER, now=0)
    with pytest.raises(LocalProtocolError, match="before the client's SETUP"):
        s.request(Interaction.RESPONSE, now=0)


# ---------------------------------------------------------------- interactions


RAW = ConnectionConfig(metadata_mime="application/octet-stream")  # metadata the core does not interpret


def test_request_response_round_trip_and_stream_is_forgotten() -> None:
    c, s = pair(RAW)
    sid = c.request(Interaction.RESPONSE, now=0, metadata=b"m", data=b"ping")
    _, (req,) = transfer(c, s)
    assert req == RequestReceived(stream_id=sid, interaction=Interaction.RESPONSE, metadata=b"m", data=b"ping")
    s.send_payload(sid, b"pong")
    (item, done), _ = transfer(c, s)
    assert item == PayloadReceived(stream_id=sid, data=b"pong") and done == InboundCompleted(stream_id=sid)
    assert c.open_streams == s.open_streams == 0


def test_composite_metadata_arrives_as_route_and_info_and_malformed_metadata_is_refused() -> None:
    c, s = pair()
    sid = c.request(Interaction.RESPONSE, now=0, metadata=request_metadata("files/x", {"offset": 3}))
    _, (req,) = transfer(c, s)
    assert req.route == "files/x" and req.info == {"offset": 3}
    bad = c.request(Interaction.RESPONSE, now=0, metadata=b"\x05\xff")  # an entry that runs past its end
    (frames, events) = (sent_after(c, s), s.events())
    assert events == [] and len(frames) == 1
    assert isinstance(frames[0], ErrorFrame) and frames[0].stream_id == bad and frames[0].code == ErrorCode.INVALID
    assert "composite metadata" in frames[0].message and sid != bad


def test_request_response_payload_without_complete_is_taken_as_complete() -> None:
    c, s = pair()
    sid = c.request(Interaction.RESPONSE, now=0)
    transfer(c, s)
    events = inject(c, PayloadFrame(stream_id=sid, data=b"x"))
    assert [type(e) for e in events] == [PayloadReceived, InboundCompleted]


def test_fire_and_forget_keeps_no_state() -> None:
    c, s = pair()
    c.request(Interaction.FNF, now=0, data=b"x")
    _, (req,) = transfer(c, s)
    assert req.interaction is Interaction.FNF
    assert c.open_streams == s.open_streams == 0


def test_request_stream_completes_and_both_sides_forget_it() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=3)
    s.send_payload(sid, b"1")
    s.send_payload(sid, b"2", complete=True)
    events, _ = transfer(c, s)
    assert [type(e) for e in events] == [PayloadReceived, PayloadReceived, InboundCompleted]
    assert c.open_streams == s.open_streams == 0


def test_channel_needs_the_responders_request_n_before_the_requester_sends() -> None:
    c, s = pair()
    sid = c.request(Interaction.CHANNEL, now=0, data=b"first", policy=Window(2))
    _, (req,) = transfer(c, s)
    assert req.data == b"first" and req.initial_n == 2
    with pytest.raises(LocalProtocolError, match="no credit"):
        c.send_payload(sid, b"too early")
    s.set_policy(sid, Window(4), now=0)
    c_events, _ = transfer(c, s)
    assert c_events == [CreditGranted(stream_id=sid, n=4)]
    c.send_payload(sid, b"up")
    c.send_complete(sid)
    s.send_payload(sid, b"down", complete=True)
    c_events, s_events = transfer(c, s)
    assert [type(e) for e in s_events] == [PayloadReceived, InboundCompleted]
    assert [type(e) for e in c_events] == [PayloadReceived, InboundCompleted]
    assert c.open_streams == s.open_streams == 0


def test_channel_with_complete_flag_has_no_requester_items() -> None:
    c, s = pair()
    sid = c.request(Interaction.CHANNEL, now=0, data=b"only", policy=Window(1), complete=True)
    _, (req,) = transfer(c, s)
    assert req.complete
    s.send_payload(sid, b"r", complete=True)
    transfer(c, s)
    assert c.open_streams == s.open_streams == 0


def test_error_from_responder_ends_the_stream_with_a_remote_error() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    assert s.send_error(sid, ErrorCode.APPLICATION_ERROR, "disk on fire")
    (ev,), _ = transfer(c, s)
    assert isinstance(ev, StreamErrored) and isinstance(ev.error, RemoteError)
    assert ev.error.code == ErrorCode.APPLICATION_ERROR and "disk on fire" in str(ev.error)
    assert c.open_streams == s.open_streams == 0
    assert not s.send_error(sid, ErrorCode.APPLICATION_ERROR, "again")  # already over


def test_metadata_push_reaches_the_peer() -> None:
    c, s = pair()
    c.metadata_push(b"hello")
    _, events = transfer(c, s)
    assert events == [MetadataPushed(metadata=b"hello")]


# ---------------------------------------------------------------- rules (docs/architecture.md, flow control)


def test_rule_items_sent_never_exceed_credits_granted() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=2)
    s.send_payload(sid, b"a")
    s.send_payload(sid, b"b")
    with pytest.raises(LocalProtocolError, match="no credit"):
        s.send_payload(sid, b"c")
    assert s.send_window(sid) == 0


def test_rule_peer_sending_past_credit_gets_error_invalid_and_excess_is_not_delivered() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=1)
    events = inject(c, PayloadFrame(stream_id=sid, data=b"ok"), PayloadFrame(stream_id=sid, data=b"excess"))
    assert [type(e) for e in events] == [PayloadReceived, StreamErrored]
    assert events[0].data == b"ok"
    assert isinstance(events[1].error, RemoteProtocolError) and events[1].error.code == ErrorCode.INVALID
    (err,) = sent(c)
    assert isinstance(err, ErrorFrame) and err.stream_id == sid and err.code == ErrorCode.INVALID
    assert "past credit" in err.message
    # and whatever else the peer sends on that stream is dropped
    assert inject(c, PayloadFrame(stream_id=sid, data=b"more")) == []


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_rule_request_n_not_positive_is_a_local_error(n: object) -> None:
    c, s = pair()
    sid = open_stream(c, s)
    with pytest.raises(LocalProtocolError, match="positive integer"):
        demand_of(c, sid).request(n, 0)
    with pytest.raises(LocalProtocolError):
        c.request(Interaction.STREAM, now=0, initial_n=0)
    assert sent(c) == []


@pytest.mark.parametrize("n", [0, 0x80000000, 0xFFFFFFFF])
def test_rule_request_n_from_peer_outside_range_is_error_invalid(n: int) -> None:
    c, s = pair()
    sid = open_stream(c, s)
    events = inject(s, RequestNFrame(stream_id=sid, n=n))
    assert isinstance(events[0], StreamErrored) and events[0].error.code == ErrorCode.INVALID  # type: ignore[union-attr]
    (err,) = sent(s)
    assert isinstance(err, ErrorFrame) and err.code == ErrorCode.INVALID


def test_rule_demand_adds_up_and_saturates_at_2_31_minus_1() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=5)
    demand_of(c, sid).request(3, 0)
    demand_of(c, sid).request(MAX_REQUEST_N, 0)
    demand_of(c, sid).request(10, 0)  # already unbounded: nothing more on the wire
    frames = sent(c)  # consecutive grants for one stream go out as one REQUEST_N
    assert frames == [RequestNFrame(stream_id=sid, n=3 + MAX_REQUEST_N - 8)]
    for frame in frames:
        s.receive(encode_frame(frame), 0)
    assert s.send_window(sid) == MAX_REQUEST_N
    for _ in range(100):
        s.send_payload(sid, b"x")
    assert s.send_window(sid) == MAX_REQUEST_N  # unbounded demand is not decremented


def test_request_n_is_coalesced_per_flush_but_not_across_other_frames() -> None:
    c, s = pair()
    a = open_stream(c, s, n=1)
    b = open_stream(c, s, n=1)
    demand_of(c, a).request(1, 0)
    demand_of(c, a).request(2, 0)
    demand_of(c, b).request(4, 0)
    demand_of(c, a).request(8, 0)
    assert sent(c) == [
        RequestNFrame(stream_id=a, n=3),
        RequestNFrame(stream_id=b, n=4),
        RequestNFrame(stream_id=a, n=8),
    ]
    demand_of(c, a).request(1, 0)
    assert sent(c) == [RequestNFrame(stream_id=a, n=1)]  # a new flush starts afresh


def test_rule_cancel_is_idempotent_and_stops_the_remote_source() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    c.cancel(sid)
    c.cancel(sid)
    assert sent(c) == [CancelFrame(stream_id=sid)]
    c.receive(encode_frame(CancelFrame(stream_id=sid)), 0)
    events = inject(s, CancelFrame(stream_id=sid), CancelFrame(stream_id=sid))
    assert events == [StreamCancelled(stream_id=sid)]
    assert c.open_streams == s.open_streams == 0


def test_rule_no_item_is_delivered_after_cancel() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=4)
    s.send_payload(sid, b"in flight")
    c.cancel(sid)
    c_events, _ = transfer(c, s)
    assert c_events == []


def test_rule_at_most_one_terminal_signal_per_stream() -> None:
    c, s = pair()
    sid = open_stream(c, s, n=4)
    s.send_complete(sid)
    with pytest.raises(LocalProtocolError, match="not open for sending"):
        s.send_complete(sid)
    with pytest.raises(LocalProtocolError):
        s.send_payload(sid, b"late")
    events = inject(
        c,
        PayloadFrame(stream_id=sid, data=b"", next=False, complete=True),
        PayloadFrame(stream_id=sid, data=b"", next=False, complete=True),
        ErrorFrame(stream_id=sid, code=0x201, message="late"),
    )
    assert events == [InboundCompleted(stream_id=sid)]


def test_payload_after_complete_on_a_live_channel_is_error_invalid() -> None:
    c, s = pair()
    sid = c.request(Interaction.CHANNEL, now=0, data=b"", policy=Window(2))
    transfer(c, s)
    events = inject(
        c,
        PayloadFrame(stream_id=sid, data=b"", next=False, complete=True),
        PayloadFrame(stream_id=sid, data=b"after"),
    )
    assert [type(e) for e in events] == [InboundCompleted, StreamErrored]


def test_frames_not_allowed_for_a_role_end_the_stream_with_invalid() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    # a request-stream requester never receives REQUEST_N
    events = inject(c, RequestNFrame(stream_id=sid, n=1))
    assert isinstance(events[0], StreamErrored) and "not allowed" in str(events[0].error)  # type: ignore[union-attr]


def test_frames_for_unknown_streams_are_ignored() -> None:
    c, s = pair()
    frames = [
        PayloadFrame(stream_id=99, data=b"x"),
        RequestNFrame(stream_id=99, n=1),
        CancelFrame(stream_id=99),
        ErrorFrame(stream_id=99, code=0x201, message="?"),
        CancelFrame(stream_id=0),
        PayloadFrame(stream_id=0, data=b"x"),
    ]
    assert inject(s, *frames) == []
    assert not s.closed and s.ignored_frames == len(frames)


def test_request_on_a_stream_id_in_use_is_ignored_and_wrong_parity_closes() -> None:
    c, s = pair()
    sid = open_stream(c, s)
    assert inject(s, RequestFrame(stream_id=sid, type=FrameType.REQUEST_STREAM, initial_n=1)) == []
    events = inject(s, RequestFrame(stream_id=2, type=FrameType.REQUEST_RESPONSE))
    assert isinstance(events[0], ConnectionClosed) and "odd stream ids" in str(events[0].error)


def test_max_streams_rejects_extra_requests_with_rejected() -> None:
    c, s = pair(server_config=ConnectionConfig(max_streams=2))
    for _ in range(3):
        c.request(Interaction.STREAM, now=0, initial_n=1)
    c_events, s_events = transfer(c, s)
    assert len(s_events) == 2
    (err,) = c_events
    assert isinstance(err, StreamErrored) and err.error.code == ErrorCode.REJECTED  # type: ignore[union-attr]
    assert "too many concurrent streams" in str(err.error)


# ---------------------------------------------------------------- fragmentation


@pytest.mark.parametrize("kind", [Interaction.RESPONSE, Interaction.STREAM, Interaction.CHANNEL, Interaction.FNF])
def test_fragmented_requests_and_payloads_arrive_whole(kind: Interaction) -> None:
    cfg = ConnectionConfig(max_frame_size=64, metadata_mime="application/octet-stream")
    c, s = pair(cfg, cfg)
    metadata, data = bytes(range(200)), bytes(range(256)) * 3
    sid = c.request(kind, metadata=metadata, data=data, initial_n=1, now=0)
    frames = c.frames_to_send()
    assert len(frames) > 10 and all(len(f) <= 64 for f in frames)
    for f in frames:
        s.receive(f, 0)
    (req,) = s.events()
    assert (req.metadata, req.data) == (metadata, data)
    if kind is Interaction.FNF:
        return
    s.send_payload(sid, data * 2, metadata)
    (item, *_), _ = transfer(c, s)
    assert isinstance(item, PayloadReceived) and (item.data, item.metadata) == (data * 2, metadata)


def test_fragmented_item_counts_as_one_credit() -> None:
    cfg = ConnectionConfig(max_frame_size=64)
    c, s = pair(cfg, cfg)
    sid = open_stream(c, s, n=2)
    s.send_payload(sid, b"x" * 1000)
    s.send_payload(sid, b"y" * 1000)
    events, _ = transfer(c, s)
    assert [len(e.data) for e in events] == [1000, 1000]  # type: ignore[union-attr]
    assert c.demand(sid).outstanding == 0  # type: ignore[union-attr]


def test_reassembly_past_the_payload_limit_is_rejected_and_dropped() -> None:
    c, s = pair(ConnectionConfig(max_frame_size=64), ConnectionConfig(max_payload_size=500))
    sid = c.request(Interaction.RESPONSE, now=0, data=b"z" * 1000)
    c_events, s_events = transfer(c, s)
    assert s_events == [] and s.open_streams == 0
    assert isinstance(c_events[0], StreamErrored) and c_events[0].error.code == ErrorCode.REJECTED  # type: ignore[union-attr]
    assert "the item's limit of 500 bytes" in str(c_events[0].error)  # type: ignore[union-attr]
    del sid


def test_cancel_midway_through_a_fragmented_request_drops_it() -> None:
    c, s = pair()
    events = inject(
        s,
        RequestFrame(stream_id=1, type=FrameType.REQUEST_RESPONSE, data=b"part", follows=True),
        CancelFrame(stream_id=1),
    )
    assert events == [] and s.open_streams == 0


# ---------------------------------------------------------------- keepalive and closing


def test_keepalive_is_sent_by_the_client_and_echoed_by_the_server() -> None:
    c = Connection(Role.CLIENT, ConnectionConfig(keepalive_interval=1, max_lifetime=10), now=0)
    s = Connection(Role.SERVER, now=0)
    transfer(c, s)
    assert c.get_timer() == 1
    c.handle_timer(1.0)
    (ka,) = [decode_frame(f) for f in c.frames_to_send()]
    assert ka == KeepaliveFrame(respond=True)
    s.receive(encode_frame(ka), 1.0)
    assert [decode_frame(f) for f in s.frames_to_send()] == [KeepaliveFrame(respond=False)]


def test_a_silent_peer_is_declared_dead_at_the_deadline() -> None:
    c = Connection(Role.CLIENT, ConnectionConfig(keepalive_interval=1, max_lifetime=3), now=0)
    s = Connection(Role.SERVER, now=0)
    transfer(c, s)
    c.handle_timer(2.9)
    assert not c.closed
    c.handle_timer(3.0)
    assert c.closed
    (closed,) = [e for e in c.events() if isinstance(e, ConnectionClosed)]
    assert isinstance(closed.error, ConnectionLostError) and "keepalive" in str(closed.error)
    assert s.get_timer() == 3.0  # the server takes its deadline from the client's SETUP
    s.handle_timer(3.0)
    assert s.closed


def test_connection_error_from_peer_closes_and_later_use_is_a_closed_resource_error() -> None:
    c, s = pair()
    events = inject(c, ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_ERROR, message="bye"))
    assert isinstance(events[0], ConnectionClosed) and isinstance(events[0].error, RemoteError)
    with pytest.raises(ClosedResourceError):
        c.request(Interaction.RESPONSE, now=0)
    c.receive(b"garbage", 0)  # ignored once closed
    assert c.events() == []


def test_garbage_closes_the_connection_with_connection_error() -> None:
    c, s = pair()
    s.receive(b"\x00\x01", 0)
    (err,) = sent(s)
    assert isinstance(err, ErrorFrame) and err.code == ErrorCode.CONNECTION_ERROR
    assert isinstance(s.events()[0], ConnectionClosed)


class Chatty:
    """A stand-in connection that answers every frame with another: two of them never go quiet."""

    def __init__(self, first: bytes):
        self.out = [first]

    def frames_to_send(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def receive(self, frame: bytes, now: float) -> None:
        self.out.append(frame)

    def events(self) -> list[object]:
        return []


def test_transfer_detects_livelock_and_lets_quiet_connections_finish() -> None:
    ping = encode_frame(KeepaliveFrame(respond=True))
    with pytest.raises(LivelockError, match="after 50 rounds"):
        transfer(Chatty(ping), Chatty(ping), max_rounds=50)  # type: ignore[arg-type]
    c, s = pair()
    for _ in range(5):
        c.handle_timer(c.get_timer() or 0)  # keepalives the server answers once each
    transfer(c, s, max_rounds=50)  # real connections go quiet: no error
