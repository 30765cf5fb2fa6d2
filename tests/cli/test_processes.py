"""Real processes: a hub process and worker processes talking WebRTC over loopback.

These run the ``rxchannel`` command itself (``python -m rxchannel``), as users do.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxchannel.cli import main
from rxchannel.files import sha256_file
from tests.support import make_file, wait_until

RX = [sys.executable, "-m", "rxchannel"]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "root"
    for i in range(3):
        make_file(root / f"file{i}.bin", 1_000_000 + i * 333_333, seed=i)
    make_file(root / "big.bin", 24 * 1024 * 1024, seed=42)
    proc = subprocess.Popen([*RX, "serve", str(root), "--port", "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    yield url, root
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, "the hub did not shut down cleanly"


def fetch_cmd(url: str, name: str, out: Path, *extra: str) -> list[str]:
    return [*RX, "fetch", url, name, "-o", str(out), "--json", *extra]


@pytest.mark.parametrize("via, path", [("webrtc", "webrtc-host"), ("auto", "direct")])
def test_three_worker_processes_fetch_different_files_at_once(
    hub: tuple[str, Path], tmp_path: Path, via: str, path: str
) -> None:
    url, root = hub
    workers = [
        subprocess.Popen(
            fetch_cmd(url, f"file{i}.bin", tmp_path / f"out{i}.bin", "--via", via), stdout=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    for i, proc in enumerate(workers):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        summary = json.loads(out)
        assert summary["sha256"] == sha256_file(root / f"file{i}.bin") == sha256_file(tmp_path / f"out{i}.bin")
        assert summary["bytes"] == (root / f"file{i}.bin").stat().st_size
        assert {"bytes", "seconds", "mb_per_s", "sha256", "peak_rss_mb", "path", "stack"} <= summary.keys()
        assert summary["path"] == path, summary
        assert (summary["stack"] is None) == (path == "direct"), summary


def test_a_killed_worker_leaves_a_part_and_a_rerun_resumes(hub: tuple[str, Path], tmp_path: Path) -> None:
    url, root = hub
    out = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    worker = subprocess.Popen(fetch_cmd(url, "big.bin", out, "--window", "2"), stdout=subprocess.PIPE)
    wait_until(lambda: part.exists() and part.stat().st_size >= 1_000_000, what="the transfer")
    worker.kill()
    worker.wait(timeout=10)
    assert part.exists() and not out.exists(), "a killed transfer must leave only the .part"
    kept = part.stat().st_size
    assert 0 < kept < 24 * 1024 * 1024

    # the hub keeps serving others meanwhile
    other = subprocess.run(fetch_cmd(url, "file1.bin", tmp_path / "o.bin"), capture_output=True, timeout=60)
    assert other.returncode == 0, other.stderr

    rerun = subprocess.run(fetch_cmd(url, "big.bin", out), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["resumed_from"] >= kept - 2 * 64 * 1024  # the sink may not have flushed its last writes
    assert summary["resumed_from"] > 0
    assert sha256_file(out) == sha256_file(root / "big.bin") and not part.exists()


def test_uploads_land_in_the_inbox_beside_the_root_and_are_not_served(
    hub: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, root = hub
    upload = tmp_path / "up.bin"
    make_file(upload, 70_000, seed=5)
    assert main(["send", url, str(upload), "--json"]) == 0
    receipt = json.loads(capsys.readouterr().out)
    assert receipt["sha256"] == sha256_file(upload)
    # the inbox is beside the served root, not inside it: workers cannot fetch each other's uploads
    assert sha256_file(root.parent / "root.inbox" / "up.bin") == receipt["sha256"]
    assert main(["fetch", url, "inbox/up.bin", "-o", str(tmp_path / "u.bin")]) == 2
    assert "no such file: 'inbox/up.bin'" in capsys.readouterr().err
    assert main(["fetch", url, "file0.bin", "-o", str(tmp_path / "f0.bin")]) == 0
    assert "sha256 verified" in capsys.readouterr().out


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_serve_and_fetch_over_tcp_and_websocket(transport: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 500_000, seed=7)
    proc = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", "--transport", transport], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith({"tcp": "tcp://", "ws": "ws://"}[transport])
        done = subprocess.run(fetch_cmd(url, "f.bin", tmp_path / "f.bin"), capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert sha256_file(tmp_path / "f.bin") == sha256_file(root / "f.bin")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_hub_on_two_processes_shares_its_port_and_each_process_serves_workers(tmp_path: Path) -> None:
    """serve --processes 2: the kernel hands each connection to one process; each logs what it
    served with its place ([1/2], [2/2]); killing the parent takes its children with it."""
    root = tmp_path / "root"
    make_file(root / "f.bin", 300_000, seed=21)
    hub = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", "--processes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert hub.stdout is not None and hub.stderr is not None
    url = hub.stdout.readline().strip()
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(hub.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    served: set[str] = set()
    try:
        for attempt in range(30):  # connections land on either process: until both have served
            out = tmp_path / f"o{attempt}.bin"
            done = subprocess.run(fetch_cmd(url, "f.bin", out, "--via", "webrtc"), capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert sha256_file(out) == sha256_file(root / "f.bin")
            served = {m for line in list(log) for m in re.findall(r"\[(\d/2)\] sent f\.bin", line)}
            if served == {"1/2", "2/2"}:
                break
        assert served == {"1/2", "2/2"}, log
        children = _children_of(hub.pid)
        assert len(children) == 2, children
    finally:
        hub.kill()  # no goodbye: the children must notice by themselves
        hub.wait()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), what="the children to end")


def test_each_process_gets_its_share_of_the_hubs_limits() -> None:
    from rxchannel.cli.parser import build_parser
    from rxchannel.cli.processes import child_argv, processes_for

    args = build_parser().parse_args(["serve", "root", "--max-connections", "100", "--processes", "4"])
    argv = child_argv(["serve", "root"], 2, 4, 8765, args)
    assert argv[-14:] == [
        "--port", "8765", "--processes", "1", "--process-of", "3/4",
        "--max-connections", "25", "--max-open-files", "256", "--max-unfinished", str(16 << 20),
        "--max-pending-offers", "16",
    ]  # fmt: skip
    assert processes_for(build_parser().parse_args(["serve", "root", "--transport", "tcp"])) == 1
    assert processes_for(args) == 4


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("via", ["webrtc", "direct"])
async def test_a_session_resumed_on_a_hub_of_two_processes_reaches_the_process_that_holds_it(
    tmp_path: Path, via: str
) -> None:
    """Each re-dial lands on either process; the one that does not hold the session passes the
    offer (or the WebSocket) on to the one that does (Rxchannel-Process), so every resume works."""
    from rxchannel.runtime import connect
    from rxchannel.transports import TransportOptions
    from rxchannel.webrtc.options import WebRtcOptions

    root = tmp_path / "root"
    data = make_file(root / "f.bin", 2_000_000, seed=22)
    hub = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", "--processes", "2"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert hub.stdout is not None
        url = await asyncio.to_thread(hub.stdout.readline)
        options = TransportOptions(webrtc=WebRtcOptions(via=via))
        peer = await connect(url.strip(), resume_timeout=30, options=options)
        try:
            stream = peer.request_stream("files/f.bin", window=2)
            got, cuts = bytearray(), 0
            async for item in stream:
                got += item.data
                if len(got) > (cuts + 1) * 300_000 and cuts < 5:
                    cuts += 1
                    peer.transport.abort()  # the link breaks: re-dial, RESUME on whichever process we land
            assert bytes(got) == data and cuts == 5
            assert peer.reconnects == 5
        finally:
            await peer.close()
    finally:
        hub.terminate()
        hub.wait(timeout=15)
