"""Hypothesis rule-based state machine over request / send / deliver / consume / cancel.

Two real core connections, joined by two in-order queues that deliver a random number of
frames at a time, so credits and items cross in flight as they would on a network. The
invariants are the flow-control rules of docs/architecture.md ("Flow control: two levels").
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rxchannel.core import (
    MAX_REQUEST_N,
    Connection,
    InboundCompleted,
    Interaction,
    LocalProtocolError,
    Manual,
    PayloadReceived,
    Role,
    StreamCancelled,
    StreamErrored,
    Window,
    decode_frame,
    encode_frame,
)
from rxchannel.core._frames import PayloadFrame, RequestNFrame
from rxchannel.testing import transfer
from tests.support import demand_of

EXAMPLES = int(os.environ.get("RXCHANNEL_FUZZ_EXAMPLES", "300"))


def deliver(queue: list[bytes], k: int, to: Connection) -> list[bytes]:
    """Hand the first ``k`` frames of ``queue`` to ``to``; the frames still in flight."""
    for frame in queue[:k]:
        to.receive(frame, 0)
    return queue[k:]


class CreditMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = Connection(Role.CLIENT, now=0)
        self.server = Connection(Role.SERVER, now=0)
        transfer(self.client, self.server)
        self.sid = self.client.request(Interaction.STREAM, now=0, initial_n=3, policy=Manual(3))
        transfer(self.client, self.server)
        self.server.events()
        self.to_server: list[bytes] = []
        self.to_client: list[bytes] = []
        self.granted = 3  # by the client, cumulative
        self.sent = 0  # by the server
        self.received = 0  # by the client (delivered to the application)
        self.consumed = 0
        self.cancelled = False
        self.completed = False
        self.terminals = 0
        self.errored = False
        self.seen_by_server_cancel = False

    def _pump_client(self) -> None:
        out = self.client.frames_to_send()
        for raw in out:
            frame = decode_frame(raw)
            if isinstance(frame, RequestNFrame):
                self.granted += frame.n  # cumulative credit, as the wire carries it
        self.to_server += out
        for ev in self.client.events():
            if isinstance(ev, PayloadReceived):
                assert not self.cancelled, "an item was delivered after cancel"
                assert self.terminals == 0, "an item was delivered after the terminal signal"
                self.received += 1
            elif isinstance(ev, (InboundCompleted, StreamErrored)):
                self.terminals += 1
                self.errored = self.errored or isinstance(ev, StreamErrored)

    def _pump_server(self) -> None:
        self.to_client += self.server.frames_to_send()
        for ev in self.server.events():
            if isinstance(ev, StreamCancelled):
                self.seen_by_server_cancel = True

    @rule(n=st.one_of(st.integers(1, 50), st.just(MAX_REQUEST_N)))
    def request(self, n: int) -> None:
        demand_of(self.client, self.sid).request(n, 0)
        self._pump_client()

    @rule(n=st.integers(-5, 0))
    def request_non_positive_is_refused(self, n: int) -> None:
        try:
            demand_of(self.client, self.sid).request(n, 0)
        except LocalProtocolError:
            pass
        else:
            raise AssertionError("request(n <= 0) was accepted")

    @rule(complete=st.booleans())
    def send(self, complete: bool) -> None:
        window = self.server.send_window(self.sid)
        if window == 0:
            try:
                self.server.send_payload(self.sid, b"x")
            except LocalProtocolError:
                return
            raise AssertionError("sending without credit was accepted")
        self.server.send_payload(self.sid, b"x", complete=complete and not self.completed)
        self.sent += 1
        self.completed = self.completed or complete
        self._pump_server()

    @rule(k=st.integers(0, 5))
    def deliver_to_server(self, k: int) -> None:
        self.to_server = deliver(self.to_server, k, self.server)
        self._pump_server()

    @rule(k=st.integers(0, 5))
    def deliver_to_client(self, k: int) -> None:
        self.to_client = deliver(self.to_client, k, self.client)
        self._pump_client()

    @precondition(lambda self: self.received > self.consumed)
    @rule()
    def consume(self) -> None:
        demand_of(self.client, self.sid).pulled()
        demand_of(self.client, self.sid).ack(1, 0)
        self.consumed += 1
        self._pump_client()

    @rule()
    def cancel(self) -> None:
        self.client.cancel(self.sid)
        self.client.cancel(self.sid)  # idempotent
        if self.terminals == 0:
            self.cancelled = True
        self._pump_client()

    @precondition(lambda self: not self.cancelled and self.terminals == 0)
    @rule()
    def peer_cheats_past_credit(self) -> None:
        demand = self.client.demand(self.sid)
        assert demand is not None
        if demand.can_receive:
            return
        before = self.received
        self.client.receive(encode_frame(PayloadFrame(stream_id=self.sid, data=b"cheat")), 0)
        self._pump_client()
        assert self.received == before, "an item past credit was delivered"
        assert self.errored
        assert any(f[4] >> 2 == 0x0B for f in self.to_server), "no ERROR was sent back"
        assert self.client.stream(self.sid) is None

    @invariant()
    def items_never_exceed_credit(self) -> None:
        assert self.sent <= self.granted
        assert self.received <= self.granted
        stream = self.server.stream(self.sid)
        if stream is not None and not stream.send_credit.unbounded:
            assert stream.send_credit.sent + stream.send_credit.available <= self.granted

    @invariant()
    def at_most_one_terminal_signal(self) -> None:
        assert self.terminals <= 1


CreditMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None)
test_credit_machine = CreditMachine.TestCase


def test_window_policy_keeps_in_flight_within_the_window() -> None:
    """A Window(8) stream with a consumer that lags: in flight never exceeds 8."""
    client = Connection(Role.CLIENT, now=0)
    server = Connection(Role.SERVER, now=0)
    transfer(client, server)
    sid = client.request(Interaction.STREAM, now=0, policy=Window(8, refill=3))
    transfer(client, server)
    pending = 0
    for step in range(500):
        while server.send_window(sid):
            server.send_payload(sid, b"i")
        c_events, _ = transfer(client, server)
        pending += sum(isinstance(e, PayloadReceived) for e in c_events)
        demand = client.demand(sid)
        assert demand is not None and demand.in_flight <= 8
        if step % 3 and pending:
            demand_of(client, sid).pulled()
            demand_of(client, sid).ack(1, 0)
            pending -= 1
