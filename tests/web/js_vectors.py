"""Test vectors for the browser client, written by the Python core so the two cannot drift.

``python -m tests.web.js_vectors`` rewrites ``tests/js/vectors/*.json``;
``tests/web/test_js_vectors.py`` fails when the committed files differ from what the core
produces now, and the ``node --test`` suite (``tests/js/``) checks the JS modules against
them: frames (every type, flags, metadata, fragments) and their decode errors, composite
metadata, demand traces of ``InboundDemand`` with every policy, including simulated
transfers that make ``Adaptive`` grow and shrink, and signed signaling requests
(``Authorization`` headers from :func:`rxchannel.webrtc.offers.sign_request`, each
accepted by the hub's :class:`~rxchannel.webrtc.offers.RequestAuth`).
"""

from __future__ import annotations

import heapq
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from rxchannel.core import (
    Adaptive,
    CancelFrame,
    ErrorFrame,
    FrameDecodeError,
    FrameType,
    InboundDemand,
    KeepaliveFrame,
    LimitRate,
    LocalProtocolError,
    Manual,
    MetadataPushFrame,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    SetupFrame,
    Window,
    bearer_metadata,
    decode_frame,
    encode_frame,
    request_metadata,
)
from rxchannel.core._fragments import encode_item
from rxchannel.core._frames import LeaseFrame, ResumeFrame, ResumeOkFrame, UnsupportedFrame
from rxchannel.core._metadata import MetadataError, decode_composite, encode_composite
from rxchannel.webrtc import offers
from tests.web import manifest_vectors

VECTORS = Path(__file__).resolve().parent.parent / "js" / "vectors"


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _fields(frame: Any) -> dict[str, Any]:
    """A decoded frame as the JS decoder returns it (camelCase names, bytes as hex)."""
    common = {"streamId": frame.stream_id}
    if isinstance(frame, SetupFrame):
        return {
            "type": "SETUP",
            **common,
            "version": list(frame.version),
            "keepaliveMs": frame.keepalive_ms,
            "lifetimeMs": frame.lifetime_ms,
            "resumeToken": _hex(frame.resume_token),
            "lease": frame.lease,
            "metadataMime": frame.metadata_mime,
            "dataMime": frame.data_mime,
            "metadata": _hex(frame.metadata),
            "data": _hex(frame.data),
        }
    if isinstance(frame, LeaseFrame):
        return {
            "type": "LEASE",
            **common,
            "ttlMs": frame.ttl_ms,
            "count": frame.count,
            "metadata": _hex(frame.metadata),
        }
    if isinstance(frame, KeepaliveFrame):
        return {
            "type": "KEEPALIVE",
            **common,
            "respond": frame.respond,
            "position": str(frame.position),
            "data": _hex(frame.data),
        }
    if isinstance(frame, RequestFrame):
        return {
            "type": frame.type.name,
            **common,
            "metadata": _hex(frame.metadata),
            "data": _hex(frame.data),
            "initialN": frame.initial_n,
            "follows": frame.follows,
            "complete": frame.complete,
        }
    if isinstance(frame, RequestNFrame):
        return {"type": "REQUEST_N", **common, "n": frame.n}
    if isinstance(frame, CancelFrame):
        return {"type": "CANCEL", **common}
    if isinstance(frame, PayloadFrame):
        return {
            "type": "PAYLOAD",
            **common,
            "metadata": _hex(frame.metadata),
            "data": _hex(frame.data),
            "follows": frame.follows,
            "complete": frame.complete,
            "next": frame.next,
        }
    if isinstance(frame, ErrorFrame):
        return {"type": "ERROR", **common, "code": frame.code, "message": frame.message}
    if isinstance(frame, MetadataPushFrame):
        return {"type": "METADATA_PUSH", **common, "metadata": _hex(frame.metadata)}
    assert isinstance(frame, UnsupportedFrame)
    return {"type": "UNSUPPORTED", **common, "frameType": frame.type, "ignorable": frame.ignorable}


def _frame_cases() -> list[tuple[str, Any]]:
    route = request_metadata("files/big.bin", {"offset": 65536, "sha256": "ab" * 32})
    return [
        ("SETUP", SetupFrame(keepalive_ms=2000, lifetime_ms=10000, metadata_mime="a", data_mime="b")),
        (
            "SETUP with bearer metadata and data",
            SetupFrame(
                keepalive_ms=1000,
                lifetime_ms=5000,
                metadata_mime="message/x.rsocket.composite-metadata.v0",
                data_mime="application/octet-stream",
                metadata=bearer_metadata("s3cret"),
                data=b"hello",
            ),
        ),
        (
            "SETUP with lease, resume token, version 1.1, empty metadata",
            SetupFrame(
                keepalive_ms=0xFFFFFFFF,
                lifetime_ms=1,
                metadata_mime="",
                data_mime="text/plain",
                metadata=b"",
                lease=True,
                resume_token=b"\x00\x01token",
                version=(1, 1),
            ),
        ),
        ("LEASE", LeaseFrame(ttl_ms=30000, count=7)),
        ("LEASE with metadata", LeaseFrame(ttl_ms=1, count=0xFFFFFFFF, metadata=b"\x01\x02")),
        ("KEEPALIVE respond", KeepaliveFrame(respond=True)),
        ("KEEPALIVE with data and position", KeepaliveFrame(respond=False, position=(1 << 63) - 1, data=b"ping")),
        (
            "REQUEST_RESPONSE",
            RequestFrame(stream_id=1, type=FrameType.REQUEST_RESPONSE, metadata=request_metadata("files"), data=b"{}"),
        ),
        ("REQUEST_FNF without metadata", RequestFrame(stream_id=3, type=FrameType.REQUEST_FNF, data=b"x")),
        (
            "REQUEST_STREAM",
            RequestFrame(stream_id=5, type=FrameType.REQUEST_STREAM, metadata=route, data=b"", initial_n=16),
        ),
        (
            "REQUEST_STREAM follows, unbounded n",
            RequestFrame(
                stream_id=0x7FFFFFFF, type=FrameType.REQUEST_STREAM, metadata=b"m", initial_n=0x7FFFFFFF, follows=True
            ),
        ),
        (
            "REQUEST_CHANNEL complete",
            RequestFrame(
                stream_id=7, type=FrameType.REQUEST_CHANNEL, metadata=route, data=b"d", initial_n=1, complete=True
            ),
        ),
        ("REQUEST_N", RequestNFrame(stream_id=9, n=4)),
        ("REQUEST_N max", RequestNFrame(stream_id=9, n=0x7FFFFFFF)),
        ("CANCEL", CancelFrame(stream_id=11)),
        ("PAYLOAD NEXT", PayloadFrame(stream_id=1, data=b"chunk")),
        (
            "PAYLOAD NEXT with metadata",
            PayloadFrame(stream_id=1, metadata=request_metadata(None, {"size": 3}), data=b"abc"),
        ),
        ("PAYLOAD COMPLETE only", PayloadFrame(stream_id=1, next=False, complete=True)),
        ("PAYLOAD NEXT COMPLETE", PayloadFrame(stream_id=1, data=b"last", complete=True)),
        ("PAYLOAD FOLLOWS", PayloadFrame(stream_id=3, metadata=b"", data=b"part", follows=True)),
        ("PAYLOAD neither NEXT nor COMPLETE", PayloadFrame(stream_id=3, next=False)),
        ("ERROR on a stream", ErrorFrame(stream_id=5, code=0x204, message="PAYLOAD past credit")),
        ("ERROR connection, non-ASCII", ErrorFrame(stream_id=0, code=0x101, message="kaputt: é ✓ 𝄞")),
        ("ERROR application code", ErrorFrame(stream_id=5, code=0x301, message="")),
        ("METADATA_PUSH", MetadataPushFrame(metadata=b"\x00\x01\x02")),
    ]


def _raw(stream_id: int, frame_type: int, flags: int, body: bytes = b"") -> bytes:
    return stream_id.to_bytes(4, "big") + ((frame_type << 10) | flags).to_bytes(2, "big") + body


def _decode_only_cases() -> list[tuple[str, bytes]]:
    """Frames another implementation may send that ours never encodes."""
    return [
        ("EXT with IGNORE", _raw(3, 0x3F, 0x200, b"\x00\x00\x00\x01xyz")),
        ("reserved type 0", _raw(0, 0x00, 0)),
        ("PAYLOAD with the reserved stream-id bit set", _raw(0x80000001, 0x0A, 0x20, b"x")),
        ("ERROR with invalid UTF-8 is decoded leniently", _raw(1, 0x0B, 0, b"\x00\x00\x02\x01ok")),
        ("REQUEST_RESPONSE with COMPLETE (ignored)", _raw(1, 0x04, 0x40, b"d")),
        (
            "SETUP with a non-ASCII MIME type, read as Latin-1",
            _raw(0, 0x01, 0, b"\x00\x01\x00\x00" + b"\x00" * 8 + b"\x01\xe9\x00"),
        ),
    ]


def _unsupported_in_js_cases() -> list[tuple[str, Any]]:
    """Frames the core decodes (resumption, issue 17) that the browser client does not process.

    The page never sends SETUP with a resume token, so a hub never resumes it; the JS
    decoder reports these as UNSUPPORTED, the way the core reports EXT.
    """
    return [
        (
            "RESUME (no resumption in the browser)",
            ResumeFrame(token=b"tok", last_received_server_position=7, first_available_client_position=3),
        ),
        ("RESUME_OK (no resumption in the browser)", ResumeOkFrame(last_received_client_position=9)),
    ]


def _malformed_cases() -> list[tuple[str, bytes]]:
    return [
        ("empty", b""),
        ("five bytes", b"\x00\x00\x00\x01\x28"),
        ("REQUEST_N without n", _raw(1, 0x08, 0, b"\x00\x01")),
        ("REQUEST_STREAM without n", _raw(1, 0x06, 0)),
        ("ERROR without code", _raw(1, 0x0B, 0, b"\x00")),
        ("KEEPALIVE without position", _raw(0, 0x03, 0x80, b"\x00" * 7)),
        ("LEASE too short", _raw(0, 0x02, 0, b"\x00" * 4)),
        ("PAYLOAD metadata flag, no length", _raw(1, 0x0A, 0x120, b"\x00")),
        ("PAYLOAD metadata longer than frame", _raw(1, 0x0A, 0x120, b"\x00\x00\x09abc")),
        ("REQUEST_CHANNEL metadata longer than frame", _raw(1, 0x07, 0x100, b"\x00\x00\x00\x01\xff\xff\xff")),
        ("SETUP too short", _raw(0, 0x01, 0, b"\x00\x01")),
        ("SETUP mime runs past the end", _raw(0, 0x01, 0, b"\x00\x01\x00\x00" + b"\x00" * 8 + b"\x05ab")),
        (
            "SETUP resume token runs past the end",
            _raw(0, 0x01, 0x80, b"\x00\x01\x00\x00" + b"\x00" * 8 + b"\x00\x09ab"),
        ),
    ]


def frames() -> dict[str, Any]:
    encoded = []
    for name, frame in _frame_cases():
        raw = encode_frame(frame)
        assert decode_frame(raw) == frame, name
        encoded.append({"name": name, "hex": raw.hex(), "frame": _fields(frame)})
    decode_only = [
        {"name": n, "hex": raw.hex(), "frame": _fields(decode_frame(raw))} for n, raw in _decode_only_cases()
    ]
    for name, frame in _unsupported_in_js_cases():
        raw = encode_frame(frame)
        assert decode_frame(raw) == frame, name
        unsupported = UnsupportedFrame(stream_id=frame.stream_id, type=raw[4] >> 2, ignorable=False)
        decode_only.append({"name": name, "hex": raw.hex(), "frame": _fields(unsupported)})
    malformed = []
    for name, raw in _malformed_cases():
        try:
            decode_frame(raw)
        except FrameDecodeError as exc:
            malformed.append({"name": name, "hex": raw.hex(), "error": str(exc)})
        else:  # pragma: no cover - a case that decodes is a mistake in this list
            raise AssertionError(f"{name} decodes")
    return {"encoded": encoded, "decodeOnly": decode_only, "malformed": malformed}


def fragments() -> list[dict[str, Any]]:
    rng = random.Random(15)
    cases = []
    shapes: list[tuple[str, int, bytes | None, bytes, int, dict[str, Any]]] = [
        ("PAYLOAD", 1, None, bytes(rng.randrange(256) for _ in range(300)), 64, {}),
        ("PAYLOAD", 1, b"m" * 100, bytes(rng.randrange(256) for _ in range(250)), 64, {"complete": True}),
        ("PAYLOAD", 3, b"", bytes(200), 100, {}),
        ("PAYLOAD", 3, b"meta", b"", 64, {"complete": True}),
        ("PAYLOAD", 5, b"x" * 70, b"y" * 70, 64, {"next": True}),
        ("PAYLOAD", 5, None, b"fits", 1024, {}),
        ("REQUEST_STREAM", 7, request_metadata("files/" + "n" * 120), b"", 64, {"initial_n": 16}),
        ("REQUEST_CHANNEL", 9, request_metadata("push/x", {"size": 5}), b"z" * 150, 80, {"initial_n": 1}),
        ("REQUEST_CHANNEL", 9, b"m", b"d" * 10, 64, {"initial_n": 2, "complete": True}),
        ("REQUEST_RESPONSE", 11, request_metadata("files"), b"q" * 500, 128, {}),
        ("REQUEST_FNF", 13, None, b"f" * 130, 64, {}),
    ]
    for first_type, sid, metadata, data, limit, options in shapes:
        frames_ = encode_item(sid, FrameType[first_type], metadata, data, limit, **options)
        cases.append(
            {
                "streamId": sid,
                "type": first_type,
                "metadata": _hex(metadata),
                "data": data.hex(),
                "limit": limit,
                "initialN": options.get("initial_n", 0),
                "complete": options.get("complete", False),
                "next": options.get("next", True),
                "frames": [f.hex() for f in frames_],
            }
        )
    return cases


def metadata() -> dict[str, Any]:
    requests = [
        ("files", None),
        ("files/big.bin", {"offset": 1048576, "sha256": "0f" * 32}),
        ("push/dir/näme ✓.bin", {"size": 0}),
        ("x", {"nested": {"list": [1, 2, "three", None, True, False]}, "text": 'quote " backslash \\ tab \t nl \n'}),
        ("control", {"c": "\x01\x1f\x7f", "emoji": "𝄞", "negative": -5}),
        (None, {"size": 123456789012}),
        (None, None),
    ]
    composite = [
        [["application/json", "7b7d"], ["message/x.custom", "0102"]],
        [["well-known:0x33", "ff"], ["text/plain", ""]],
    ]
    bad = ["80", "7f61", "fe000001", "85000005616263", "00"]
    errors = []
    for raw in bad:
        try:
            decode_composite(bytes.fromhex(raw))
        except MetadataError as exc:
            errors.append({"hex": raw, "error": str(exc)})
        else:  # pragma: no cover
            raise AssertionError(raw)
    return {
        "requests": [{"route": r, "info": i, "hex": request_metadata(r, i).hex()} for r, i in requests],
        "composite": [
            {"entries": entries, "hex": encode_composite([(m, bytes.fromhex(c)) for m, c in entries]).hex()}
            for entries in composite
        ],
        "bearer": [{"token": t, "hex": bearer_metadata(t).hex()} for t in ("s3cret", "")],
        "decodeErrors": errors,
    }


# ------------------------------------------------------------------ demand traces


def _policy(spec: dict[str, Any]) -> Any:
    kind = spec["kind"]
    if kind == "window":
        return Window(spec["size"], spec.get("refill"))
    if kind == "limit_rate":
        return LimitRate(spec["high"], spec["low"])
    if kind == "manual":
        return Manual(spec["initial"])
    return Adaptive(
        spec["initial"], min_window=spec["minWindow"], max_window=spec["maxWindow"], max_bytes=spec["maxBytes"]
    )


#: the order of a snapshot's fields (``demand.json`` stores each as a list, to stay small)
STATE_FIELDS = [
    "outstanding",
    "waiting",
    "unacked",
    "grantedTotal",
    "receivedTotal",
    "ackedTotal",
    "unbounded",
    "ended",
    "rtt",
    "window",
    "rate",
]


def _snapshot(demand: InboundDemand, policy: Any) -> list[Any]:
    state = [
        demand.outstanding,
        demand.waiting,
        demand.unacked,
        demand.granted_total,
        demand.received_total,
        demand.acked_total,
        demand.unbounded,
        demand.ended,
        demand.rtt,
    ]
    if isinstance(policy, Adaptive):
        state += [policy.window, policy.rate]
    return state


class _Trace:
    def __init__(self, spec: dict[str, Any], auto_ack: bool):
        self.policy = _policy(spec)
        self.demand = InboundDemand(self.policy, auto_ack=auto_ack)
        self.record: dict[str, Any] = {"policy": spec, "autoAck": auto_ack, "ops": []}

    def op(self, name: str, now: float, *args: int) -> Any:
        verbs: dict[str, Callable[[], Any]] = {
            "start": lambda: self.demand.start(now),
            "request": lambda: self.demand.request(args[0], now),
            "received": lambda: self.demand.received(args[0], now),
            "wants_next": lambda: self.demand.wants_next(now),
            "pulled": lambda: self.demand.pulled(),
            "ack": lambda: self.demand.ack(args[0], now),
            "end": lambda: self.demand.end(),
        }
        try:
            result: Any = verbs[name]()
        except LocalProtocolError:
            result = {"error": "LocalProtocolError"}
        self.record["ops"].append([name, list(args), now, result, _snapshot(self.demand, self.policy)])
        return result


def _random_trace(rng: random.Random, spec: dict[str, Any], steps: int) -> dict[str, Any]:
    trace = _Trace(spec, auto_ack=rng.random() < 0.5)
    now = rng.random()
    trace.op("start", now)
    for _ in range(steps):
        now += rng.choice([0.0, rng.random() / 50, rng.random() / 5])
        d = trace.demand
        roll = rng.random()
        if roll < 0.35:
            trace.op("received", now, rng.choice([0, 1, 1024, 65536, rng.randrange(1 << 20)]))
        elif roll < 0.55 and d.waiting:
            trace.op("pulled", now)
        elif roll < 0.70:
            trace.op("wants_next", now)
        elif roll < 0.85:
            n = rng.choice([1, max(1, d.unacked), d.unacked + 1, 0]) if rng.random() < 0.8 else d.unacked
            trace.op("ack", now, n)
        elif roll < 0.97:
            trace.op("request", now, rng.choice([0, -1, 1, 3, 64, 0x7FFFFFFF, 0x80000000]))
        elif roll < 0.98:
            trace.op("end", now)
        else:
            trace.op("start", now)
    return trace.record


def _simulated_trace(
    spec: dict[str, Any], *, latency: float, send_gap: float, phases: list[tuple[int, float]], size: int, auto_ack: bool
) -> dict[str, Any]:
    """A transfer with a one-way ``latency``, a sender that needs ``send_gap`` per item and a
    consumer whose time per item changes by phase: the grants decide what happens next."""
    trace = _Trace(spec, auto_ack)
    events: list[tuple[float, int, str, int]] = []
    seq = 0

    def at(when: float, kind: str, value: int = 0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, seq, kind, value))

    total = sum(count for count, _ in phases)
    credit = sent = consumed = 0
    sender_free = 0.0
    busy = False

    def grant(n: int, now: float) -> None:
        if n:
            at(now + latency, "credit", n)

    grant(trace.op("start", 0.0), 0.0)
    while events:
        now, _, kind, value = heapq.heappop(events)
        if kind == "credit":
            credit += value
        elif kind == "arrive":
            trace.op("received", now, size)
        elif kind == "done":
            busy = False
            consumed += 1
            if not auto_ack:
                grant(trace.op("ack", now, 1), now)
        while credit and sent < total:
            sender_free = max(sender_free, now) + send_gap
            credit -= 1
            sent += 1
            at(sender_free + latency, "arrive")
        if not busy and trace.demand.waiting and consumed < total:
            if auto_ack:
                grant(trace.op("wants_next", now), now)
            trace.op("pulled", now)
            busy = True
            limit = 0
            for count, per_item in phases:
                limit += count
                if consumed < limit:
                    at(now + per_item, "done")
                    break
    return trace.record


def demand() -> dict[str, Any]:
    rng = random.Random(1315)
    policies: list[dict[str, Any]] = [
        {"kind": "window", "size": 1, "refill": None},
        {"kind": "window", "size": 16, "refill": None},
        {"kind": "window", "size": 64, "refill": 64},
        {"kind": "limit_rate", "high": 10, "low": 3},
        {"kind": "manual", "initial": 0},
        {"kind": "manual", "initial": 5},
        {"kind": "adaptive", "initial": 4, "minWindow": 1, "maxWindow": 65536, "maxBytes": 64 << 20},
        {"kind": "adaptive", "initial": 2, "minWindow": 2, "maxWindow": 12, "maxBytes": 1 << 20},
    ]
    traces = [_random_trace(rng, spec, 200) for spec in policies for _ in range(2)]
    auto = {"kind": "adaptive", "initial": 4, "minWindow": 1, "maxWindow": 65536, "maxBytes": 64 << 20}
    small = {"kind": "adaptive", "initial": 4, "minWindow": 1, "maxWindow": 65536, "maxBytes": 4 << 20}
    traces += [
        # a long path and a fast consumer, then a slow one: the window grows, then shrinks
        _simulated_trace(
            auto, latency=0.02, send_gap=0.0005, phases=[(400, 0.0004), (80, 0.01)], size=65536, auto_ack=True
        ),
        _simulated_trace(auto, latency=0.05, send_gap=0.0002, phases=[(300, 0.0001)], size=16384, auto_ack=False),
        # the memory cap bounds the window
        _simulated_trace(small, latency=0.03, send_gap=0.0001, phases=[(150, 0.0001)], size=1 << 20, auto_ack=True),
        _simulated_trace(
            {"kind": "window", "size": 16, "refill": None},
            latency=0.01,
            send_gap=0.001,
            phases=[(120, 0.002)],
            size=65536,
            auto_ack=False,
        ),
    ]
    return {"stateFields": STATE_FIELDS, "traces": traces}


def signing() -> list[dict[str, Any]]:
    """Signed signaling requests: ``sign_request``'s header for fixed clocks and nonces.

    ``sign_request`` draws its nonce from :mod:`secrets`; here the nonce is fixed so that
    the file is reproducible. Each header is checked by the hub's own ``RequestAuth``.
    """
    offer = json.dumps({"sdp": "v=0\r\no=- 46 2 IN IP4 127.0.0.1\r\na=x:é✓\r\n", "type": "offer"}, ensure_ascii=False)
    cases = [
        ("GET /ice-servers, no body", "s3cret", "GET", "/ice-servers", "", 1_700_000_000.75, "AAAAbbbb"),
        ("POST /offer with an SDP (UTF-8 body)", "s3cret", "POST", "/offer", offer, 1_700_000_123.0, "n0nce-_Z9"),
        ("a non-ASCII secret, lower-case method", "sécret ✓", "post", "/offer", "{}", 1_800_000_000.2, "x" * 64),
        ("a path below a prefix", "s", "GET", "/hub/ice-servers", "", 1_700_000_000, "Q1w2E3r4T5"),
    ]
    vectors = []
    for name, secret, method, path, body, now, nonce in cases:
        with mock.patch.object(offers, "secrets", SimpleNamespace(token_urlsafe=lambda _n, nonce=nonce: nonce)):
            header = offers.sign_request(secret, method, path, body.encode(), now)
        offers.RequestAuth(secret).check(header, method.upper(), path, body.encode(), now)  # the hub accepts it
        vectors.append(
            {
                "name": name,
                "secret": secret,
                "method": method,
                "path": path,
                "body": body,
                "now": now,
                "nonce": nonce,
                "header": header,
            }
        )
    return vectors


def build() -> dict[str, str]:
    """File name -> content of every vector file."""
    content = {
        "frames.json": frames(),
        "fragments.json": fragments(),
        "metadata.json": metadata(),
        "demand.json": demand(),
        "signing.json": signing(),
        "manifest.json": manifest_vectors.manifest(),
    }
    return {
        name: json.dumps(value, indent=None if name == "demand.json" else 1, ensure_ascii=False) + "\n"
        for name, value in content.items()
    }


def main() -> int:
    VECTORS.mkdir(parents=True, exist_ok=True)
    for name, text in build().items():
        (VECTORS / name).write_text(text, encoding="utf-8")
        print(f"wrote {VECTORS / name} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
