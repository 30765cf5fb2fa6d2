"""Frame codec, composite metadata, routing and fragmentation (rxchannel.core, no I/O)."""

from __future__ import annotations

import pytest

from rxchannel.core import (
    FrameDecodeError,
    FrameType,
    LengthPrefixDecoder,
    MetadataError,
    RemoteProtocolError,
    decode_composite,
    decode_frame,
    decode_route,
    encode_composite,
    encode_frame,
    encode_route,
    parse_request_metadata,
    prefix,
    request_metadata,
)
from rxchannel.core._fragments import Reassembly, split
from rxchannel.core._frames import (
    CancelFrame,
    ErrorFrame,
    KeepaliveFrame,
    LeaseFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    SetupFrame,
    UnsupportedFrame,
)

FRAMES = [
    SetupFrame(keepalive_ms=500, lifetime_ms=10_000, metadata_mime="a/b", data_mime="c/d", metadata=b"m", data=b"d"),
    SetupFrame(keepalive_ms=1, lifetime_ms=2, metadata_mime="", data_mime="x", resume_token=b"tok", lease=True),
    LeaseFrame(ttl_ms=10, count=3, metadata=b"lease"),
    KeepaliveFrame(respond=True, position=7, data=b"ping"),
    RequestFrame(stream_id=1, type=FrameType.REQUEST_RESPONSE, metadata=b"", data=b"x"),
    RequestFrame(stream_id=3, type=FrameType.REQUEST_FNF, data=b"fire"),
    RequestFrame(stream_id=5, type=FrameType.REQUEST_STREAM, initial_n=2**31 - 1, metadata=b"m" * 300, data=b"q"),
    RequestFrame(stream_id=7, type=FrameType.REQUEST_CHANNEL, initial_n=1, data=b"", complete=True, follows=True),
    RequestNFrame(stream_id=9, n=42),
    CancelFrame(stream_id=11),
    PayloadFrame(stream_id=13, data=b"payload", metadata=b"meta", complete=True),
    PayloadFrame(stream_id=13, data=b"", next=False, complete=True),
    PayloadFrame(stream_id=15, data=b"frag", follows=True),
    ErrorFrame(stream_id=0, code=0x101, message="gone ✓"),
    MetadataPushFrame(metadata=b"\x01\x02"),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips(frame: object) -> None:
    assert decode_frame(encode_frame(frame)) == frame  # type: ignore[arg-type]


def test_payload_layout_matches_the_spec_byte_for_byte() -> None:
    # stream 1, type 0x0A, flags M|N (0x100|0x20), metadata length 3, "abc", data "xy"
    raw = encode_frame(PayloadFrame(stream_id=1, metadata=b"abc", data=b"xy"))
    assert raw == b"\x00\x00\x00\x01" + (0x0A << 10 | 0x120).to_bytes(2, "big") + b"\x00\x00\x03abcxy"


def test_request_stream_layout_has_initial_n_before_metadata() -> None:
    raw = encode_frame(RequestFrame(stream_id=1, type=FrameType.REQUEST_STREAM, initial_n=5, data=b"d"))
    assert raw == b"\x00\x00\x00\x01\x18\x00\x00\x00\x00\x05d"


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"", "shorter than the 6-byte header"),
        (b"\x00\x00\x00\x01\x28", "shorter than the 6-byte header"),
        (b"\x00\x00\x00\x01\x29\x00\x00\x00", "before the 3-byte metadata length"),
        (b"\x00\x00\x00\x01\x29\x00\x00\x00\x09ab", "runs past the end"),
        (b"\x00\x00\x00\x01\x20\x00\x00\x00", "REQUEST_N frame truncated"),
        (b"\x00\x00\x00\x00\x2c\x00\x00\x00", "ERROR frame truncated"),
        (b"\x00\x00\x00\x00\x04\x00" + b"\x00" * 5, "SETUP frame truncated"),
        (b"\x00\x00\x00\x00\x0c\x00" + b"\x00" * 7, "KEEPALIVE frame truncated"),
    ],
)
def test_malformed_frames_raise_a_decode_error_that_says_why(raw: bytes, why: str) -> None:
    with pytest.raises(FrameDecodeError, match=why) as info:
        decode_frame(raw)
    assert info.value.code == 0x101  # CONNECTION_ERROR


def test_unknown_frame_type_decodes_as_unsupported_with_its_ignore_flag() -> None:
    frame = decode_frame(b"\x00\x00\x00\x01" + (0x3F << 10 | 0x200).to_bytes(2, "big"))
    assert frame == UnsupportedFrame(stream_id=1, type=0x3F, ignorable=True)


def test_composite_metadata_round_trips_well_known_and_custom_types() -> None:
    entries = [
        ("message/x.rsocket.routing.v0", encode_route("files/a.txt")),
        ("application/json", b"{}"),
        ("application/x-custom", b"\x00" * 10),
        ("well-known:0x30", b"unassigned id"),
    ]
    raw = encode_composite(entries)
    assert decode_composite(raw) == entries
    assert raw[0] == 0x80 | 0x7E  # routing is sent as its well-known id


@pytest.mark.parametrize(
    "raw", [b"\x05abc", b"\xfe\x00\x00", b"\xfe\x00\x00\x05ab", b"\x7f" + b"a" * 10, b"\x01\xff\xfe\x00\x00\x00"]
)
def test_malformed_composite_metadata_is_a_metadata_error(raw: bytes) -> None:
    with pytest.raises(MetadataError) as info:
        decode_composite(raw)
    assert info.value.code == 0x204  # INVALID, for the stream


def test_routing_tags_round_trip_and_reject_bad_input() -> None:
    assert decode_route(encode_route("a", "ü/b")) == ["a", "ü/b"]
    with pytest.raises(MetadataError):
        decode_route(b"\x05ab")
    with pytest.raises(ValueError):
        encode_route("x" * 256)


def test_request_metadata_carries_route_and_json_info() -> None:
    raw = request_metadata("files/x", {"offset": 5})
    assert parse_request_metadata(raw) == ("files/x", {"offset": 5})
    assert parse_request_metadata(None) == (None, {})
    with pytest.raises(MetadataError, match="not valid JSON"):
        parse_request_metadata(encode_composite([("application/json", b"{nope")]))


def test_length_prefix_decoder_reassembles_across_arbitrary_reads() -> None:
    frames = [encode_frame(f) for f in FRAMES]
    stream = b"".join(prefix(f) + f for f in frames)
    for step in (1, 2, 7, 64, len(stream)):
        dec = LengthPrefixDecoder()
        out: list[bytes] = []
        for i in range(0, len(stream), step):
            out += dec.feed(stream[i : i + step])
        assert out == frames
        assert dec.buffered == 0


def test_length_prefix_over_the_limit_is_refused_before_buffering() -> None:
    dec = LengthPrefixDecoder(max_frame_size=100)
    with pytest.raises(RemoteProtocolError, match="101-byte frame"):
        dec.feed(b"\x00\x00\x65")


@pytest.mark.parametrize("meta_len, data_len, limit", [(0, 1000, 64), (500, 0, 64), (300, 700, 100), (5, 5, 64)])
def test_split_keeps_every_frame_under_the_limit_and_metadata_first(meta_len: int, data_len: int, limit: int) -> None:
    metadata, data = bytes(range(256)) * 2, bytes(reversed(range(256))) * 4
    metadata, data = metadata[:meta_len], data[:data_len]
    parts = split(metadata, data, limit, first_extra=4)
    for i, (m, d) in enumerate(parts):
        size = 6 + (4 if i == 0 else 0) + (3 + len(m) if m is not None else 0) + len(d)
        assert size <= limit
    assert b"".join(m or b"" for m, _ in parts) == metadata
    assert b"".join(d for _, d in parts) == data
    seen_data = False
    for m, d in parts:
        assert not (seen_data and m), "metadata must be sent completely before data"
        seen_data = seen_data or bool(d)


def test_reassembly_refuses_past_its_limit() -> None:
    r = Reassembly(limit=10)
    r.add(1, b"12345", b"")
    with pytest.raises(RemoteProtocolError, match=r"the item.s limit of 10 bytes") as info:
        r.add(1, None, b"123456")
    assert info.value.code == 0x202  # REJECTED
