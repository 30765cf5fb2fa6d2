"""Session resumption in the sans-IO core (issue 17; Protocol.md "Resuming Operation").

Two Connections joined by a :class:`Wire` that holds the frames in flight each way; a cut
drops whatever is in flight (what a broken transport loses) and both sides detach; the
client resumes over a new wire, where a *fresh* server connection receives the RESUME and
hands it to the session, as the runtime does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rxchannel.core import Connection as Conn
from rxchannel.core import (
    ConnectionClosed,
    ConnectionConfig,
    ConnectionLostError,
    CreditGranted,
    Detached,
    ErrorCode,
    ErrorFrame,
    Interaction,
    KeepaliveFrame,
    Manual,
    PayloadReceived,
    RequestReceived,
    Resumed,
    ResumeFrame,
    ResumeOkFrame,
    ResumeReceived,
    ResumeStore,
    Role,
    SetupConfirmed,
    SetupReceived,
    SetupRejectedError,
    decode_frame,
    encode_frame,
    make_token,
    token_matches,
    with_secret,
)
from tests.support import demand_of

STORE = 64 << 10


def client_config(**kw: object) -> ConnectionConfig:
    return ConnectionConfig(resume_token=make_token(), resume_store_bytes=STORE, **kw)  # type: ignore[arg-type]


SERVER = ConnectionConfig(resumable=True, resume_store_bytes=STORE, resume_session_timeout=30.0)


@dataclass
class Wire:
    """Frames in flight between a client and a server connection (the transport)."""

    client: Conn
    server: Conn
    to_server: deque[bytes] = field(default_factory=deque)
    to_client: deque[bytes] = field(default_factory=deque)
    client_events: list[object] = field(default_factory=list)
    server_events: list[object] = field(default_factory=list)

    def pump(self) -> None:
        """Take what both sides want to send and put it in flight."""
        self.to_server.extend(self.client.frames_to_send())
        self.to_client.extend(self.server.frames_to_send())

    def deliver(self, to_server: int | None = None, to_client: int | None = None, now: float = 0.0) -> None:
        for _ in range(len(self.to_server) if to_server is None else min(to_server, len(self.to_server))):
            self.server.receive(self.to_server.popleft(), now)
        for _ in range(len(self.to_client) if to_client is None else min(to_client, len(self.to_client))):
            self.client.receive(self.to_client.popleft(), now)
        self.client_events += self.client.events()
        self.server_events += self.server.events()

    def settle(self, now: float = 0.0) -> None:
        for _ in range(1000):
            self.pump()
            if not self.to_server and not self.to_client:
                return
            self.deliver(now=now)
        raise AssertionError("still talking")

    def cut(self, now: float = 0.0) -> None:
        """The transport breaks: what is in flight is lost; both sides detach."""
        self.pump()
        self.to_server.clear()
        self.to_client.clear()
        self.client.detach(now)
        self.server.detach(now)

    def resume(self, now: float = 0.0) -> str | None:
        """A new transport: the client sends RESUME to a fresh server connection, which the
        session takes over (as the runtime's Server does). Returns a refusal reason, or None."""
        self.client.start_resume(now)
        (resume,) = self.client.frames_to_send()
        fresh = Conn(Role.SERVER, SERVER, now=now)
        fresh.receive(resume, now)
        (event,) = fresh.events()
        assert isinstance(event, ResumeReceived)
        reason = self.server.accept_resume(event.frame, now)
        if reason is not None:
            fresh.refuse_resume(reason)
            for frame in fresh.frames_to_send():
                self.client.receive(frame, now)
            self.client_events += self.client.events()
        return reason


def opened(client_cfg: ConnectionConfig | None = None) -> Wire:
    c = Conn(Role.CLIENT, client_cfg or client_config(), now=0.0)
    s = Conn(Role.SERVER, SERVER, now=0.0)
    wire = Wire(c, s)
    wire.settle()
    assert any(isinstance(e, SetupReceived) and e.resume_token == c.resume_token for e in wire.server_events)
    assert any(isinstance(e, SetupConfirmed) for e in wire.client_events)
    return wire


def streaming(initial_n: int) -> tuple[Wire, int]:
    """:func:`opened`, with one request-stream open that was granted ``initial_n`` items (no more asked)."""
    wire = opened()
    sid = wire.client.request(Interaction.STREAM, policy=Manual(0), initial_n=initial_n, now=0.0)
    wire.settle()
    return wire, sid


def items(events: list[object], sid: int) -> list[bytes]:
    return [e.data for e in events if isinstance(e, PayloadReceived) and e.stream_id == sid]


# ------------------------------------------------------------------ frames and the store


def test_resume_frames_round_trip() -> None:
    frame = ResumeFrame(token=b"t" * 16, last_received_server_position=5, first_available_client_position=2)
    assert decode_frame(encode_frame(frame)) == frame
    ok = ResumeOkFrame(last_received_client_position=2**63 - 1)
    assert decode_frame(encode_frame(ok)) == ok
    with pytest.raises(Exception, match="RESUME"):
        decode_frame(encode_frame(frame)[:20])


def test_the_store_resumes_only_from_frame_boundaries_it_kept() -> None:
    store = ResumeStore(100)
    for frame in (b"a" * 10, b"b" * 20, b"c" * 30):
        store.add(frame)
    assert (store.first, store.position, store.size) == (0, 60, 60)
    assert store.since(10) == [b"b" * 20, b"c" * 30]
    assert store.since(5) is None and store.since(61) is None
    store.release(29)  # inside the second frame: only the first goes
    assert (store.first, store.size) == (10, 50)
    assert store.since(0) is None and store.since(60) == []


def test_tokens_carry_128_random_bits_and_a_secret_s_mac() -> None:
    plain, signed = make_token(), make_token("s")
    assert len(plain) == 16 and len(signed) == 32 and make_token() != plain
    assert token_matches(plain, None) and token_matches(signed, "s")
    assert not token_matches(signed, "other") and not token_matches(plain, "s")


# ------------------------------------------------------------------ a cut in the middle of streams


def test_a_cut_mid_stream_loses_nothing_and_duplicates_nothing() -> None:
    wire = opened()
    c, s = wire.client, wire.server
    sid = c.request(Interaction.STREAM, data=b"", policy=Manual(0), initial_n=10, now=0.0)
    wire.settle()
    for i in range(10):
        s.send_payload(sid, f"{i}".encode())
    wire.pump()
    wire.deliver(to_client=4)  # 4 arrive; 6 are lost in the cut
    wire.cut()
    assert c.detached and s.detached
    for i in range(10, 12):  # sent while detached: into the store only
        with pytest.raises(Exception, match="credit"):
            s.send_payload(sid, f"{i}".encode())
    assert wire.resume() is None
    wire.settle()
    assert items(wire.client_events, sid) == [f"{i}".encode() for i in range(10)]
    assert any(isinstance(e, Resumed) for e in wire.client_events)
    assert any(isinstance(e, Resumed) for e in wire.server_events)
    # credit survived exactly: the stream asked for 10 and got 10; asking for more works
    demand_of(c, sid).request(2, 0.0)
    wire.settle()
    assert any(isinstance(e, CreditGranted) and e.n == 2 for e in wire.server_events)


def test_a_channel_both_ways_across_two_cuts() -> None:
    wire = opened()
    c, s = wire.client, wire.server
    sid = c.request(Interaction.CHANNEL, data=b"c0", policy=Manual(0), initial_n=20, now=0.0)
    wire.settle()
    assert any(isinstance(e, RequestReceived) for e in wire.server_events)
    s.set_policy(sid, Manual(20), 0.0)
    wire.settle()
    sent_up, sent_down = [b"c0"], []
    for round_ in range(3):
        for i in range(5):
            if c.send_window(sid):
                c.send_payload(sid, f"up{round_}{i}".encode())
                sent_up.append(f"up{round_}{i}".encode())
            if s.send_window(sid):
                s.send_payload(sid, f"down{round_}{i}".encode())
                sent_down.append(f"down{round_}{i}".encode())
        wire.pump()
        wire.deliver(to_server=2, to_client=3)
        if round_ < 2:
            wire.cut(now=round_)
            assert wire.resume(now=round_) is None
    wire.settle()
    inbound = [b"c0"] + [e.data for e in wire.server_events if isinstance(e, PayloadReceived)]
    assert inbound == sent_up
    assert items(wire.client_events, sid) == sent_down
    assert c.resumes == 2 and s.resumes == 2


def test_acknowledged_frames_leave_the_store() -> None:
    wire, sid = streaming(1000)
    s = wire.server
    for _ in range(200):
        s.send_payload(sid, b"x" * 1000)
        wire.settle()
    # the client reported its position every quarter of the bound: the server kept less than that
    assert s.store_size < STORE // 4 + 2000


def test_a_silent_peer_detaches_a_resumable_connection_then_the_session_expires() -> None:
    c = Conn(Role.CLIENT, client_config(keepalive_interval=1.0, max_lifetime=3.0), now=0.0)
    s = Conn(Role.SERVER, SERVER, now=0.0)
    wire = Wire(c, s)
    wire.settle()
    c.handle_timer(3.5)
    assert c.detached and any(isinstance(e, Detached) for e in c.events())
    assert c.get_timer() == pytest.approx(3.5 + 120.0)  # the client's default session timeout
    c.handle_timer(3.5 + 120.0)
    (closed,) = [e for e in c.events() if isinstance(e, ConnectionClosed)]
    assert isinstance(closed.error, ConnectionLostError) and "not resumed within 120 s" in str(closed.error)


def test_nothing_but_resume_goes_out_until_resume_ok() -> None:
    wire = opened()
    c = wire.client
    wire.cut()
    c.start_resume(0.0)
    sid = c.request(Interaction.STREAM, policy=Manual(0), initial_n=1, now=0.0)  # made while resuming
    frames = [decode_frame(f) for f in c.frames_to_send()]
    assert [type(f) for f in frames] == [ResumeFrame]
    (resume,) = frames
    assert isinstance(resume, ResumeFrame) and resume.stream_id == 0
    assert resume.token == c.resume_token  # the SETUP's token
    assert resume.last_received_server_position == c._session.received  # type: ignore[union-attr]
    assert c.handle_timer(10.0) is None and not c.frames_to_send()  # no KEEPALIVE either
    fresh = Conn(Role.SERVER, SERVER, now=0.0)
    fresh.receive(encode_frame(frames[0]), 0.0)
    (event,) = fresh.events()
    assert wire.server.accept_resume(event.frame, 0.0) is None
    wire.settle()
    assert any(isinstance(e, RequestReceived) and e.stream_id == sid for e in wire.server_events)


def test_dropping_resumption_right_after_a_resume_still_sends_its_resume_ok_and_retransmissions() -> None:
    wire = opened()
    wire.cut()
    wire.client.start_resume(0.0)
    (resume,) = wire.client.frames_to_send()
    fresh = Conn(Role.SERVER, SERVER, now=0.0)
    fresh.receive(resume, 0.0)
    (event,) = fresh.events()
    assert wire.server.accept_resume(event.frame, 0.0) is None  # RESUME_OK queued ahead of everything
    assert wire.server.drop_resumption()  # e.g. the runtime gave up on a peer that never acknowledges
    sent = [decode_frame(f) for f in wire.server.frames_to_send()]
    assert sent and isinstance(sent[0], ResumeOkFrame), "the RESUME_OK still goes out, first"


# ------------------------------------------------------------------ refusals


def test_a_server_that_does_not_resume_refuses_the_r_flag_and_resume() -> None:
    c = Conn(Role.CLIENT, client_config(), now=0.0)
    s = Conn(Role.SERVER, ConnectionConfig(), now=0.0)
    wire = Wire(c, s)
    wire.settle()
    (closed,) = [e for e in wire.client_events if isinstance(e, ConnectionClosed)]
    assert isinstance(closed.error, SetupRejectedError) and closed.error.code == ErrorCode.REJECTED_SETUP
    fresh = Conn(Role.SERVER, ConnectionConfig(), now=0.0)
    fresh.receive(
        encode_frame(ResumeFrame(token=b"t" * 16, last_received_server_position=0, first_available_client_position=0)),
        0.0,
    )
    (error,) = [decode_frame(f) for f in fresh.frames_to_send()]
    assert isinstance(error, ErrorFrame) and error.code == ErrorCode.REJECTED_RESUME


def test_a_token_of_another_identity_is_refused_at_setup() -> None:
    cfg = with_secret(ConnectionConfig(resume_token=make_token("other")), "other", server=False)
    server = with_secret(SERVER, "hub", server=True)
    wire = Wire(Conn(Role.CLIENT, cfg, now=0.0), Conn(Role.SERVER, server, now=0.0))
    wire.settle()
    (closed,) = [e for e in wire.client_events if isinstance(e, ConnectionClosed)]
    assert isinstance(closed.error, SetupRejectedError)


def test_resume_with_the_wrong_token_or_impossible_positions_is_refused() -> None:
    wire = opened()
    wire.cut()
    forged = ResumeFrame(token=make_token(), last_received_server_position=0, first_available_client_position=0)
    assert "does not match" in (wire.server.accept_resume(forged, 0.0) or "")
    wire, sid = streaming(5)
    c, s = wire.client, wire.server
    wire.cut()
    ahead = ResumeFrame(
        token=c.resume_token or b"", last_received_server_position=10**6, first_available_client_position=0
    )
    reason = s.accept_resume(ahead, 0.0)
    assert reason is not None and "cannot resume from position 1000000" in reason
    assert s.closed  # a session that cannot continue is over
    del sid


def test_a_refused_resume_fails_the_client_s_streams_with_a_lost_connection() -> None:
    wire = opened()
    wire.cut()
    wire.server.close()  # the hub forgot the session (it expired)
    wire.client.start_resume(0.0)
    (resume,) = wire.client.frames_to_send()
    fresh = Conn(Role.SERVER, SERVER, now=0.0)
    fresh.receive(resume, 0.0)
    fresh.events()
    fresh.refuse_resume("no such session")
    for frame in fresh.frames_to_send():
        wire.client.receive(frame, 0.0)
    (closed,) = [e for e in wire.client.events() if isinstance(e, ConnectionClosed)]
    assert isinstance(closed.error, ConnectionLostError) and "could not resume the session: no such session" in str(
        closed.error
    )


def test_a_resume_ok_the_client_cannot_honour_ends_with_connection_error() -> None:
    """Errors during resumption are CONNECTION_ERROR or REJECTED_RESUME (Protocol.md)."""
    wire = opened()
    c = wire.client
    wire.cut()
    c.start_resume(0.0)
    c.frames_to_send()
    c.receive(encode_frame(ResumeOkFrame(last_received_client_position=10**6)), 0.0)
    (error,) = [f for f in map(decode_frame, c.frames_to_send()) if isinstance(f, ErrorFrame)]
    assert error.stream_id == 0 and error.code == ErrorCode.CONNECTION_ERROR
    assert "kept only" in error.message and c.closed


def test_resume_after_setup_is_a_connection_error() -> None:
    wire = opened()
    frame = ResumeFrame(token=b"t" * 16, last_received_server_position=0, first_available_client_position=0)
    wire.server.receive(encode_frame(frame), 0.0)
    (error,) = [decode_frame(f) for f in wire.server.frames_to_send()]
    assert isinstance(error, ErrorFrame) and error.code == ErrorCode.CONNECTION_ERROR


def test_keepalives_carry_the_implied_position() -> None:
    wire, sid = streaming(3)
    c, s = wire.client, wire.server
    for _ in range(3):
        s.send_payload(sid, b"abc")
    wire.settle()
    c.handle_timer(c.get_timer() or 0.0)
    pings = [decode_frame(f) for f in c.frames_to_send()]
    (ping,) = [f for f in pings if isinstance(f, KeepaliveFrame)]
    assert ping.respond and ping.position == 3 * (6 + 3)  # three PAYLOAD frames: header + data


# ------------------------------------------------------------------ any interleaving


class ResumeMachine(RuleBasedStateMachine):
    """Random sends, deliveries, cuts and resumes on a channel (both ways) and a stream:
    each side receives exactly a prefix of what the other sent, in order; once everything
    is delivered, exactly all of it; the store stays within its bound."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = opened()
        c, s = self.wire.client, self.wire.server
        self.channel = c.request(Interaction.CHANNEL, policy=Manual(0), initial_n=50, now=0.0)
        self.stream = c.request(Interaction.STREAM, policy=Manual(0), initial_n=50, now=0.0)
        self.wire.settle()
        s.set_policy(self.channel, Manual(50), 0.0)
        self.wire.settle()
        self.up: list[bytes] = [b""]  # the channel's request carries an empty first item
        self.down: dict[int, list[bytes]] = {self.channel: [], self.stream: []}
        self.n = 0
        self.connected = True
        self.max_store = 0

    def _room(self, conn: Conn) -> bool:
        room = conn.store_room
        return room is None or room > 0

    @rule(size=st.integers(1, 3000))
    def client_sends(self, size: int) -> None:
        c = self.wire.client
        if c.send_window(self.channel) and self._room(c):
            self.n += 1
            item = bytes([self.n % 251]) * size
            c.send_payload(self.channel, item)
            self.up.append(item)

    @rule(size=st.integers(1, 3000), on_stream=st.booleans())
    def server_sends(self, size: int, on_stream: bool) -> None:
        s = self.wire.server
        sid = self.stream if on_stream else self.channel
        if s.send_window(sid) and self._room(s):
            self.n += 1
            item = bytes([self.n % 251]) * size
            s.send_payload(sid, item)
            self.down[sid].append(item)

    @rule(sid_is_stream=st.booleans(), n=st.integers(1, 20))
    def client_grants(self, sid_is_stream: bool, n: int) -> None:
        if self.connected or self.wire.client.detached:
            demand_of(self.wire.client, self.stream if sid_is_stream else self.channel).request(n, 0.0)

    @rule(n=st.integers(1, 20))
    def server_grants(self, n: int) -> None:
        demand_of(self.wire.server, self.channel).request(n, 0.0)

    @precondition(lambda self: self.connected)
    @rule(to_server=st.integers(0, 8), to_client=st.integers(0, 8))
    def deliver(self, to_server: int, to_client: int) -> None:
        self.wire.pump()
        self.wire.deliver(to_server, to_client)

    @precondition(lambda self: self.connected)
    @rule()
    def cut(self) -> None:
        self.wire.cut()
        self.connected = False

    @precondition(lambda self: not self.connected)
    @rule()
    def resume(self) -> None:
        assert self.wire.resume() is None
        self.connected = True

    @invariant()
    def prefixes(self) -> None:
        events_c, events_s = self.wire.client_events, self.wire.server_events
        got_up = [b""] + [e.data for e in events_s if isinstance(e, PayloadReceived)]
        assert got_up == self.up[: len(got_up)]
        for sid, sent in self.down.items():
            got = items(events_c, sid)
            assert got == sent[: len(got)]

    @invariant()
    def store_bounded(self) -> None:
        for conn in (self.wire.client, self.wire.server):
            # items wait while the store is full; control frames (credit, errors) may add a little
            assert conn.store_size <= STORE + 3000 + 1024
            self.max_store = max(self.max_store, conn.store_size)

    def teardown(self) -> None:
        if not self.connected:
            assert self.wire.resume() is None
        self.wire.settle()
        self.prefixes()
        assert [b""] + [e.data for e in self.wire.server_events if isinstance(e, PayloadReceived)] == self.up
        for sid, sent in self.down.items():
            assert items(self.wire.client_events, sid) == sent
        assert not self.wire.client.closed and not self.wire.server.closed


TestResumeMachine = ResumeMachine.TestCase
TestResumeMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
