"""ICE configuration: servers as W3C dictionaries, the CLI and environment that build them, the
UDP port-range hook, and what the hub hands workers at ``GET /ice-servers``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from pathlib import Path

import aiohttp
import pytest

import rxchannel as rx
from rxchannel.cli import main
from rxchannel.core import with_secret
from rxchannel.hub import Hub
from rxchannel.transports import TransportOptions
from rxchannel.webrtc.aiortc_stack import rtc_peer_connection as new_peer_connection
from rxchannel.webrtc.answerer import Answerer
from rxchannel.webrtc.gathering import ice_host_addresses
from rxchannel.webrtc.ice import IceServer, IceServerError, TurnRest, ice_servers_from_json
from rxchannel.webrtc.offers import sign_request
from rxchannel.webrtc.signaling import WebRtcListener


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("turn:user:pass@turn.example.org:3478", "not in the URL"),
        ("http://turn.example.org", "not an ICE server URL"),
        ("stuns:stun.example.org", "not supported by aiortc"),
        ("turns:t.example.org?transport=udp", "over TCP only"),
        ("stun:s.example.org:99999", "out of range"),
        ("turn:t.example.org", "needs a username and a credential"),
    ],
)
def test_unusable_ice_servers_are_refused_with_what_to_write_instead(url: str, why: str) -> None:
    with pytest.raises(IceServerError, match=why):
        IceServer.parse(url)


def test_ice_servers_round_trip_as_w3c_dictionaries() -> None:
    text = json.dumps(
        [
            {"urls": "stun:s.example.org:3478"},
            {"urls": ["turn:t.example.org?transport=tcp"], "username": "u", "credential": "c"},
        ]
    )
    servers = ice_servers_from_json(text)
    assert [s.to_w3c() for s in servers] == json.loads(
        text.replace('"stun:s.example.org:3478"', '["stun:s.example.org:3478"]')
    )
    with pytest.raises(IceServerError, match=r"RXCHANNEL_ICE_SERVERS\[0\].*needs a username"):
        ice_servers_from_json('[{"urls": "turn:t.example.org"}]')
    with pytest.raises(IceServerError, match="not JSON"):
        ice_servers_from_json("stun:x")


def test_turn_rest_credentials_follow_the_coturn_scheme() -> None:
    turn = TurnRest(("turn:t.example.org:3478",), "s3cret", ttl=600)
    username, credential = turn.credentials(1_700_000_000, "w1")
    assert username == "1700000600:w1"
    assert base64.b64decode(credential) == hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--ice-server", "turn:u:p@h:3478"], "not in the URL"),
        (["--ice-server", "turn:h:3478"], "needs a username"),
        (["--ice-username", "u", "--ice-credential", "c"], "apply to --ice-server turn: URLs"),
    ],
)
def test_the_cli_refuses_unusable_ice_options_with_exit_1(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["fetch", "http://127.0.0.1:9", "f", "-o", str(tmp_path / "o"), *argv]) == 1
    assert why in capsys.readouterr().err


def test_an_unreachable_hub_exits_4_with_a_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    assert main(["fetch", f"http://127.0.0.1:{port}", "f", "-o", str(tmp_path / "o")]) == 4
    err = capsys.readouterr().err
    assert f"cannot reach http://127.0.0.1:{port}: connection refused" in err


async def test_the_hub_hands_workers_minted_turn_credentials_behind_its_secret(tmp_path: Path) -> None:
    turn = TurnRest(("turn:turn.example.org:3478",), "turn-secret", ttl=900)
    static = [IceServer.parse("stun:stun.example.org"), IceServer(("turn:mine.example.org",), "me", "pw")]
    # the listener without listen_webrtc's start-up allocation (that needs a real coturn: tests/network)
    listener = WebRtcListener(Answerer(lambda t: None, ice_servers=static, turn=turn), secret="hub")
    await listener.start("127.0.0.1", 0)
    try:
        url = listener.url + "/ice-servers"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert response.status == 401
            headers = {"Authorization": sign_request("hub", "GET", "/ice-servers", b"", time.time())}
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
                given = await response.json()
    finally:
        await listener.close()
    assert given["ttl"] == 900
    minted, stun = given["iceServers"]
    assert minted["urls"] == ["turn:turn.example.org:3478"] and stun == {"urls": ["stun:stun.example.org"]}
    expiry, _ = minted["username"].split(":")
    mac = hmac.new(b"turn-secret", minted["username"].encode(), hashlib.sha1).digest()
    assert minted["credential"] == base64.b64encode(mac).decode() and int(expiry) > 0
    handed = [(entry.get("username"), entry.get("credential")) for entry in given["iceServers"]]
    assert ("me", "pw") not in handed and "mine.example.org" not in json.dumps(given), (
        "the hub's own static TURN server and credential are never handed out"
    )


async def test_a_full_udp_port_range_refuses_the_offer_and_names_the_flag() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answerer = Answerer(lambda t: None, hosts=["127.0.0.1"], udp_ports=(port, port))
    offers = []
    for _ in range(2):
        pc = new_peer_connection()
        pc.createDataChannel("x")
        with ice_host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        offers.append(pc)
    try:
        first = await answerer.answer({"type": "offer", "sdp": offers[0].localDescription.sdp})
        assert f" {port} typ host" in first["sdp"]
        with pytest.raises(Exception, match=rf"no free UDP port in {port}-{port}.*--udp-ports") as info:
            await answerer.answer({"type": "offer", "sdp": offers[1].localDescription.sdp})
        assert getattr(info.value, "status", None) == 503
    finally:
        await answerer.close()
        for pc in offers:
            await pc.close()


async def test_serve_and_connect_carry_the_options_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    hub = Hub(tmp_path, inbox=tmp_path / "inbox")
    options = TransportOptions(secret="s")

    server = await rx.serve(hub.router, transport="webrtc", options=options, config=with_secret(None, "s", server=True))
    try:
        with pytest.raises(ConnectionError, match="requires the shared secret"):
            await rx.connect(server.url)
        peer = await rx.connect(server.url, options=options, config=with_secret(None, "s", server=False))
        await peer.close()
    finally:
        await server.close()
