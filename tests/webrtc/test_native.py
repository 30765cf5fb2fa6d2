"""The native stack (libwebrtc, ``--webrtc-stack native``) against itself and against aiortc,
with real files and real processes.

libwebrtc never gathers on loopback, so these run on this host's own non-loopback address
(the traffic stays on the host).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.files import fetch_file, sha256_file
from rxchannel.hub import Hub
from rxchannel.transports import TransportOptions
from rxchannel.webrtc.options import WebRtcOptions
from rxchannel.webrtc.stack import choose_stack
from tests.support import interface_address, make_file

RX = [sys.executable, "-m", "rxchannel"]


@pytest.mark.parametrize("hub_stack, worker_stack", [("aiortc", "native"), ("native", "aiortc"), ("native", "native")])
async def test_each_stack_serves_and_fetches_from_the_other_verified(
    hub_stack: str, worker_stack: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 3_000_000, seed=31)
    hub = Hub(root)
    server = await rx.serve(
        hub.router,
        transport="webrtc",
        host=interface_address(),
        options=TransportOptions(webrtc=WebRtcOptions(stack=hub_stack)),
    )
    try:
        peer = await rx.connect(
            server.url, options=TransportOptions(webrtc=WebRtcOptions(via="webrtc", stack=worker_stack))
        )
        try:
            result = await fetch_file(peer, "f.bin", tmp_path / "out.bin", window=16)
            assert result.sha256 == sha256_file(root / "f.bin") == sha256_file(tmp_path / "out.bin")
            assert peer.transport.stack == worker_stack and peer.transport.path == "webrtc-host"
            (hub_side,) = server.peers
            assert hub_side.transport.stack == hub_stack
            # the hub says which path it sees (a libwebrtc end knows only its own candidate)
            seen = json.loads((await peer.request_response("path")).data)
            assert seen == {"path": hub_side.transport.path} == {"path": "webrtc-host"}
        finally:
            await peer.close()
    finally:
        await server.close()
        hub.close()


def test_loopback_falls_back_to_aiortc_unless_asked() -> None:
    """libwebrtc cannot gather on 127.0.0.1: a loopback hub or worker runs on aiortc by default."""
    assert choose_stack(None, ["127.0.0.1"]).name == "aiortc"
    assert choose_stack(None, ["10.1.0.1"]).name == "native"
    assert choose_stack(None, None).name == "native"
    assert choose_stack("native", ["127.0.0.1"]).name == "native"


def _fetch(url: str, out: Path, size_name: str) -> dict[str, float]:
    done = subprocess.run(
        [*RX, "fetch", url, size_name, "-o", str(out), "--json", "--via", "webrtc", "--webrtc-stack", "native"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, float] = json.loads(done.stdout)
    return summary


@pytest.mark.timeout(300)
def test_the_native_stack_hides_no_queue_the_workers_memory_is_flat_in_file_size(tmp_path: Path) -> None:
    """A 256 MiB fetch peaks no higher than a 16 MiB one (within 24 MB), worker and hub alike:
    libwebrtc's receive side has no flow control of its own, so only credit bounds it."""
    root = tmp_path / "root"
    make_file(root / "small.bin", 16 << 20, seed=32)
    make_file(root / "big.bin", 256 << 20, seed=33)
    hub = subprocess.Popen(
        [*RX, "serve", str(root), "--host", interface_address(), "--port", "0", "--processes", "1",
         "--webrtc-stack", "native", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert hub.stdout is not None
        url = hub.stdout.readline().strip()
        small = _fetch(url, tmp_path / "small.bin", "small.bin")
        big = _fetch(url, tmp_path / "big.bin", "big.bin")
        assert big["sha256"] == sha256_file(root / "big.bin") and big["stack"] == "native"
        assert big["peak_rss_mb"] <= small["peak_rss_mb"] + 24, (small["peak_rss_mb"], big["peak_rss_mb"])
        hub_rss = Path(f"/proc/{hub.pid}/status").read_text()
        peak_kib = int(next(line for line in hub_rss.splitlines() if line.startswith("VmHWM")).split()[1])
        assert peak_kib < 200 * 1024, f"the hub peaked at {peak_kib >> 10} MB serving 256 MiB"
    finally:
        hub.terminate()
        hub.wait(timeout=15)
