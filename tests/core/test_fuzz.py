"""Random and mutated bytes into the decoder and into live core connections.

Whatever arrives, the decoder returns a frame or raises FrameDecodeError, and a
connection never raises: it answers per the spec (ignore, stream ERROR, or connection
ERROR and close). ``make fuzz`` runs many more examples (RXCHANNEL_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxchannel.core import (
    Connection,
    ConnectionConfig,
    FrameDecodeError,
    Interaction,
    Role,
    Window,
    decode_frame,
    encode_frame,
)
from rxchannel.testing import transfer
from tests.support import frames

EXAMPLES = int(os.environ.get("RXCHANNEL_FUZZ_EXAMPLES", "2000"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(frames)
def test_decoder_returns_a_frame_or_a_decode_error(raw: bytes) -> None:
    try:
        frame = decode_frame(raw)
    except FrameDecodeError as exc:
        assert exc.code == 0x101 and str(exc)
        return
    try:
        again = encode_frame(frame)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, UnicodeError):
        return  # an unsupported frame, or a field we would never send ourselves
    assert decode_frame(again) == frame


def _live_pair() -> tuple[Connection, Connection, int]:
    cfg = ConnectionConfig(max_frame_size=64, max_payload_size=4096, max_streams=8)
    client = Connection(Role.CLIENT, cfg, now=0)
    server = Connection(Role.SERVER, cfg, now=0)
    transfer(client, server)
    sid = client.request(Interaction.CHANNEL, now=0, metadata=b"", data=b"go", policy=Window(4))
    transfer(client, server)
    server.set_policy(sid, Window(4), now=0)
    transfer(client, server)
    return client, server, sid


@SETTINGS
@given(st.lists(frames, max_size=12), st.booleans())
def test_a_live_connection_survives_any_frame_sequence(batch: list[bytes], to_server: bool) -> None:
    client, server, _ = _live_pair()
    target = server if to_server else client
    for raw in batch:
        target.receive(raw, 1.0)  # must not raise
        target.events()
        for out in target.frames_to_send():
            decode_frame(out)  # what we answer is always well-formed
    if not target.closed:
        # still usable: a fresh request flows end to end
        usable = not client.closed and not client.draining
        sid = client.request(Interaction.RESPONSE, now=0, data=b"ping") if usable else None
        if sid is not None and not server.closed:
            transfer(client, server)


@SETTINGS
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_a_server_before_setup_survives_anything(batch: list[bytes]) -> None:
    server = Connection(Role.SERVER, now=0)
    for raw in batch:
        server.receive(raw, 0)
    for out in server.frames_to_send():
        decode_frame(out)
