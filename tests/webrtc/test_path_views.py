"""The path a worker reports is the wider of its own view and the hub's (route ``path``):
libwebrtc tells each end only its own candidate's type, so a worker whose host candidate
reached the hub's TURN relay sees ``webrtc-host`` while the bytes go through coturn
(tests/network/test_netns.py checks that case across real NATs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.cli.ice import agree_on_path
from rxchannel.hub import Hub
from rxchannel.transports import TransportOptions
from rxchannel.webrtc.options import WebRtcOptions
from rxchannel.webrtc.stack import either_path
from tests.support import make_file


@pytest.mark.parametrize(
    "ours, theirs, agreed",
    [
        ("webrtc-host", "webrtc-relay", "webrtc-relay"),
        ("webrtc-relay", "webrtc-host", "webrtc-relay"),
        ("webrtc-host", "webrtc-srflx", "webrtc-srflx"),
        ("webrtc-srflx", "webrtc-host", "webrtc-srflx"),
        ("webrtc-host", "webrtc-host", "webrtc-host"),
        ("webrtc-host", "carrier pigeon", "webrtc-host"),  # not a path: our view stands
        ("webrtc-host", None, "webrtc-host"),
        ("webrtc-host", ["webrtc-relay"], "webrtc-host"),
        ("direct", "direct", "direct"),
    ],
)
def test_the_wider_view_wins_and_nonsense_changes_nothing(ours: str, theirs: object, agreed: str) -> None:
    assert either_path(ours, theirs) == agreed


async def test_a_worker_takes_the_hubs_view_when_it_is_wider(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 1000, seed=3)
    hub = Hub(root)
    server = await rx.serve(hub.router, transport="webrtc", host="127.0.0.1")
    try:
        peer = await rx.connect(server.url, options=TransportOptions(webrtc=WebRtcOptions(via="webrtc")))
        try:
            (hub_side,) = server.peers
            assert peer.transport.path == hub_side.transport.path == "webrtc-host"
            await agree_on_path(peer)
            assert peer.transport.path == "webrtc-host"  # the views agree: nothing changes
            # the hub's end of the pair is a TURN relay (as behind two symmetric NATs, where
            # the worker's host candidate reaches the hub's allocation): set on the hub's real
            # transport, asked over the real connection
            hub_side.transport.path = "webrtc-relay"
            assert json.loads((await peer.request_response("path")).data) == {"path": "webrtc-relay"}
            await agree_on_path(peer)
            assert peer.transport.path == "webrtc-relay"
        finally:
            await peer.close()
    finally:
        await server.close()
        hub.close()


async def test_a_hub_without_the_route_leaves_the_workers_view(tmp_path: Path) -> None:
    server = await rx.serve(rx.Router(), transport="webrtc", host="127.0.0.1")  # answers no route at all
    try:
        peer = await rx.connect(server.url, options=TransportOptions(webrtc=WebRtcOptions(via="webrtc")))
        try:
            await agree_on_path(peer, timeout=10)
            assert peer.transport.path == "webrtc-host"
            with pytest.raises(rx.RemoteError):  # a refused request: the connection still answers
                await peer.request_response("path")
        finally:
            await peer.close()
    finally:
        await server.close()
