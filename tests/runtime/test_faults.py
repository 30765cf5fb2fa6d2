"""Faults mid-transfer: a transport that dies, a worker or a hub process killed.

Every open stream ends with an error naming the cause within the keepalive deadline,
sinks keep their ``.part``, a re-run resumes to a verified file, and the hub keeps
serving others.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.core import Role
from rxchannel.files import fetch_file, sha256_file
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Peer, serve
from tests.support import eventually, make_file, open_peers, silence_after_setup, wait_until

RX = [sys.executable, "-m", "rxchannel"]
FAST = ["--keepalive", "0.2", "--max-lifetime", "1.5"]


async def pair_over(kind: str, hub: Hub) -> tuple[Peer, Peer]:
    client, server = await open_peers(kind, hub.router)
    return client, server


@pytest.mark.parametrize("kind", ["tcp", "datachannel"])
async def test_transport_death_mid_transfer_fails_both_sides_keeps_the_part_and_resumes(
    kind: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 2_000_000, seed=5)
    hub = Hub(root, limits=HubLimits(chunk_size=16 * 1024))
    client, server = await pair_over(kind, hub)
    out = tmp_path / "f.bin"

    def cut(done: int, total: int | None, credits: int) -> None:
        if done >= 300_000:
            client.transport.abort()  # a TCP reset / the peer connection torn down

    with pytest.raises(rx.ConnectionLostError):
        await fetch_file(client, "f.bin", out, window=4, progress=cut)
    async with asyncio.timeout(5):
        error = await server.wait_closed()
    await eventually(lambda: not hub.sources, what="the hub closing the file")
    assert isinstance(error, rx.ConnectionLostError), error
    part = tmp_path / "f.bin.part"
    kept = part.stat().st_size
    assert kept >= 300_000 and not out.exists()
    await client.close()
    await server.close()

    client, server = await pair_over(kind, hub)
    result = await fetch_file(client, "f.bin", out, window=8)
    assert result.resumed_from == kept and sha256_file(out) == sha256_file(root / "f.bin")
    await client.close()
    await server.close()


async def test_a_killed_worker_process_frees_the_hub_at_the_keepalive_deadline(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "big.bin", 16 * 1024 * 1024, seed=6)
    make_file(root / "small.bin", 100_000, seed=7)
    hub = Hub(root)
    service = await serve(hub.router, transport="webrtc")
    out = tmp_path / "big.bin"
    worker = subprocess.Popen(  # over WebRTC: a killed process sends nothing, the hub must notice by itself
        [*RX, "fetch", service.url, "big.bin", "-o", str(out), "--window", "2", "--via", "webrtc", *FAST]
    )
    part = tmp_path / "big.bin.part"
    await eventually(lambda: part.exists() and part.stat().st_size >= 500_000, timeout=30, what="the transfer")
    assert hub.sources, "the transfer should be under way"
    (hub_side,) = service.peers
    worker.kill()  # no goodbye: no CANCEL, no SCTP shutdown
    await asyncio.to_thread(worker.wait)
    async with asyncio.timeout(10):
        error = await hub_side.wait_closed()
    # freed by the deadline the worker's SETUP asked for (--max-lifetime 1.5), not by chance
    assert isinstance(error, rx.ConnectionLostError) and "keepalive limit 1.5 s" in str(error), error
    await eventually(lambda: not hub.sources and not service.peers, what="the hub closing the dead worker's file")
    # the hub still serves others
    other = await asyncio.to_thread(
        subprocess.run,
        [*RX, "fetch", service.url, "small.bin", "-o", str(tmp_path / "s.bin"), "--json"],
        capture_output=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    await service.close()


def test_a_hub_restarted_mid_transfer_lets_the_worker_resume(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "big.bin", 16 * 1024 * 1024, seed=8)

    def start_hub() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen([*RX, "serve", str(root), "--port", "0", *FAST], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        return proc, proc.stdout.readline().strip()

    hub, url = start_hub()
    out = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    worker = subprocess.Popen(
        [*RX, "fetch", url, "big.bin", "-o", str(out), "--window", "2", *FAST],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: part.exists() and part.stat().st_size >= 500_000, what="the transfer")
    hub.kill()
    hub.wait()
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 4, err
    assert "connection lost" in err and "run the same command again to resume from" in err
    assert "big.bin.part (" in err and "received)" in err  # names what it kept
    assert part.exists() and not out.exists()

    hub, url = start_hub()
    try:
        rerun = subprocess.run(
            [*RX, "fetch", url, "big.bin", "-o", str(out), "--json", *FAST], capture_output=True, text=True, timeout=120
        )
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["resumed_from"] > 0
        assert sha256_file(out) == sha256_file(root / "big.bin")
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=15)


def test_a_silent_client_is_dropped_at_the_lifetime_its_setup_asked_for(tmp_path: Path) -> None:
    """In virtual time: the server's own default lifetime is 90 s; the SETUP asks for 0.4 s."""
    from rxchannel.core import SetupFrame

    setup = SetupFrame(keepalive_ms=100, lifetime_ms=400, metadata_mime="m", data_mime="d")
    # then silence: no keepalive ever comes
    error, elapsed = silence_after_setup(lambda end: Peer(end, Role.SERVER, router=Hub(tmp_path).router), setup)
    assert isinstance(error, rx.ConnectionLostError) and "keepalive" in str(error)
    assert elapsed == pytest.approx(0.4, abs=0.01), f"dropped after {elapsed:.3f} s instead of the 0.4 s asked for"
