"""``-`` is the standard streams (issue 31): ``fetch URL PATH -o -`` writes standard output and
``send URL - --name NAME`` reads standard input, the pipe's backpressure being the demand.

Real processes throughout: a hub (``rxchannel serve ROOT --port 0 --processes 1``, so its pid
is the process that reads the files), ``rxchannel`` commands, ``head``, ``tee``, and this
test as the slow reader of a pipe. How far the hub has read is its ``rchar``
(``tests/pipes/procfs.py`` says why not ``fdinfo``'s ``pos``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rxchannel.core import PayloadFrame, RequestFrame, encode_composite, encode_frame
from rxchannel.files import sha256_file
from tests.cli.lying import lying_hub
from tests.pipes.procfs import io, pipe_size, rss
from tests.support import make_file, wait_until

RX = [sys.executable, "-m", "rxchannel"]
CHUNK = 64 * 1024
BIG = 24 << 20


@dataclass
class Hub:
    url: str
    root: Path
    inbox: Path
    pid: int
    log: Path

    def log_since(self, offset: int) -> str:
        return self.log.read_text()[offset:]

    def log_size(self) -> int:
        return len(self.log.read_text())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    base = tmp_path_factory.mktemp("stdio")
    root = base / "root"
    make_file(root / "big.bin", BIG, seed=31)
    make_file(root / "small.bin", 200_000, seed=32)
    make_file(root / "dir" / "a.bin", 10, seed=33)
    log = base / "hub.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [*RX, "serve", str(root), "--port", "0", "--processes", "1"], stdout=subprocess.PIPE, stderr=err, text=True
        )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    yield Hub(url, root, base / "root.inbox", proc.pid, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_slow_reader_of_fetch_to_stdout_slows_the_hubs_reads(hub: Hub, tmp_path: Path, loop: str) -> None:
    """The reader takes 1 MiB/s for 4 MiB: the hub has read at most what it took, plus the
    window, plus the pipe (and a little for the frames the hub's socket brings in)."""
    window = 4
    before = io(hub.pid)["rchar"]
    fetch = subprocess.Popen(
        [*RX, "fetch", hub.url, "big.bin", "-o", "-", "--window", str(window), "--loop", loop],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        bufsize=0,
    )
    assert fetch.stdout is not None
    pipe = pipe_size(fetch.stdout.fileno())
    digest = hashlib.sha256()
    consumed, samples, worst = 0, 0, 0
    start = None
    while consumed < 4 << 20:  # 1 MiB/s: 64 KiB every 1/16 s
        data = fetch.stdout.read(CHUNK)
        assert data, "the fetch ended early"
        start = start or time.monotonic()
        digest.update(data)
        consumed += len(data)
        read = io(hub.pid)["rchar"] - before
        assert read <= consumed + pipe + (window + 1) * CHUNK + CHUNK, (
            f"the hub read {read} bytes while the reader had taken {consumed}"
        )
        worst = max(worst, read - consumed)
        samples += 1
        time.sleep(max(0.0, start + consumed / (1 << 20) - time.monotonic()))
    assert samples >= 64
    while data := fetch.stdout.read(1 << 20):  # the rest at full speed
        digest.update(data)
    _, err = fetch.communicate(timeout=60)
    assert fetch.returncode == 0, err
    assert err == b"", err  # no terminal: no progress, no summary
    assert digest.hexdigest() == sha256_file(hub.root / "big.bin")
    assert list(tmp_path.iterdir()) == []  # no file named "-", no .part
    print(f"hub read ahead of the reader by at most {worst} bytes (pipe {pipe}, window {window} x {CHUNK})")


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_fetch_to_stdout_under_head_cancels_the_stream_and_exits_quietly(hub: Hub, tmp_path: Path, loop: str) -> None:
    offset = hub.log_size()
    fetch = subprocess.Popen(
        [*RX, "fetch", hub.url, "big.bin", "-o", "-", "--window", "32", "--loop", loop],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    head = subprocess.Popen(["head", "-c", "100"], stdin=fetch.stdout, stdout=subprocess.PIPE)
    assert fetch.stdout is not None
    fetch.stdout.close()  # head holds the only read end
    out, _ = head.communicate(timeout=60)
    assert out == (hub.root / "big.bin").read_bytes()[:100]
    _, err = fetch.communicate(timeout=30)
    assert fetch.returncode == 141, err  # 128 + SIGPIPE: what a shell says of cat under head
    assert err == b""  # quietly
    # the hub logs a cancel (a stream that stopped early), not an error; it read about a window
    wait_until(lambda: "sent big.bin" in hub.log_since(offset), what="the hub's log of the stream")
    log = hub.log_since(offset)
    sent = re.search(r"sent big\.bin to \S+ (\d+) bytes from offset 0 in [\d.]+ s \((\w+)\)", log)
    assert sent is not None, log
    assert sent.group(2) == "stopped", log
    assert int(sent.group(1)) <= 34 * CHUNK + (1 << 20), log  # the window of 32, not the file
    assert not re.search(r"\b(error|warning|Traceback)\b", log), log
    assert list(tmp_path.iterdir()) == []


def test_send_reads_stdin_as_credit_arrives_with_flat_memory(hub: Hub, tmp_path: Path) -> None:
    """96 MiB piped into ``send -``, and the hub stopped (SIGSTOP) for a while in the middle:
    the sender stops reading its stdin (the pipe fills; ``cat`` waits) instead of taking it
    into memory, its RSS stays flat, and the hub's receipt is the digest of what was piped."""
    size = 96 << 20
    source = tmp_path / "source.bin"
    subprocess.run(["head", "-c", str(size), "/dev/urandom"], stdout=open(source, "wb"), check=True)  # noqa: SIM115
    read_end, write_end = os.pipe()  # this test keeps the read end too, to see how full the pipe is
    cat = subprocess.Popen(["cat", str(source)], stdout=write_end)
    sender = subprocess.Popen(
        [*RX, "send", hub.url, "-", "--name", "piped.bin", "--json"],
        stdin=read_end,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    os.close(write_end)
    capacity = pipe_size(read_end)

    def stored() -> int:
        parts = list(hub.inbox.glob("piped.bin.*.part"))
        return parts[0].stat().st_size if parts else 0

    try:
        wait_until(lambda: stored() >= 16 << 20 or sender.poll() is not None, what="16 MiB to arrive")
        before = rss(sender.pid)
        os.kill(hub.pid, signal.SIGSTOP)
        try:
            # the hub grants nothing now: the sender must leave the rest in the pipe, and cat wait
            settled = Settled(lambda: io(cat.pid)["wchar"])
            wait_until(lambda: cat.poll() is not None or settled(), what="cat to wait for the pipe")
            assert cat.poll() is None, "the sender read all of its stdin while the hub granted nothing"
            ahead = io(cat.pid)["wchar"] - stored()
            held = rss(sender.pid)
        finally:
            os.kill(hub.pid, signal.SIGCONT)
        out, err = sender.communicate(timeout=60)
    finally:
        os.close(read_end)
        cat.wait(timeout=30)
    assert sender.returncode == 0, err
    receipt = json.loads(out)
    assert receipt["sha256"] == sha256_file(source) == sha256_file(hub.inbox / "piped.bin")
    assert receipt["size"] == size and receipt["stored"] == "piped.bin"
    print(
        f"sender RSS {before >> 20} MiB at 16 MiB sent, {held >> 20} MiB with the hub stopped ({size >> 20} MiB "
        f"piped); cat was {ahead} bytes ahead of the hub's disk"
    )
    assert held - before <= 16 << 20, f"the sender's RSS grew by {(held - before) >> 20} MiB"
    # what cat wrote and the hub has not: the pipe, asyncio's reader buffer (2 chunks and a read),
    # the push route's window of 16 chunks in flight, and the chunk in hand on each side
    assert ahead <= capacity + (2 + 1 + 16 + 2) * CHUNK, ahead


class Settled:
    """True once ``value()`` has not changed over 50 samples in a row (a process waiting on a
    full pipe makes no progress; one that is only slow does)."""

    def __init__(self, value: Callable[[], int]):
        self.value, self.last, self.same = value, -1, 0

    def __call__(self) -> bool:
        now = self.value()
        self.same = self.same + 1 if now == self.last else 0
        self.last = now
        return self.same >= 50


def test_a_digest_mismatch_after_the_bytes_went_out_exits_3_with_a_message(tmp_path: Path) -> None:
    def answer(sid: int, _req: RequestFrame) -> list[bytes]:
        first = PayloadFrame(
            stream_id=sid, data=b"x" * 10, metadata=encode_composite([("application/json", b'{"size": 20}')])
        )
        last = PayloadFrame(
            stream_id=sid,
            data=b"y" * 10,
            metadata=encode_composite([("application/json", json.dumps({"sha256": "0" * 64}).encode())]),
            complete=True,
        )
        return [encode_frame(first), encode_frame(last)]

    with lying_hub(answer) as liar:
        done = subprocess.run(
            [*RX, "fetch", liar.url, "x.bin", "-o", "-"], capture_output=True, timeout=60, cwd=tmp_path
        )
    assert done.returncode == 3, done.stderr
    assert done.stdout == b"x" * 10 + b"y" * 10  # they went out before the end could be checked
    assert b"SHA-256 mismatch" in done.stderr and b"discard" in done.stderr
    assert b"resumes" not in done.stderr  # nothing to resume from
    assert list(tmp_path.iterdir()) == []


def test_json_goes_to_stderr_when_stdout_is_the_data(hub: Hub, tmp_path: Path) -> None:
    done = subprocess.run(
        [*RX, "fetch", hub.url, "small.bin", "-o", "-", "--json"], capture_output=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (hub.root / "small.bin").read_bytes()
    summary = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert summary["output"] == "-" and summary["bytes"] == 200_000
    assert summary["sha256"] == sha256_file(hub.root / "small.bin")

    missing = subprocess.run(
        [*RX, "fetch", hub.url, "nope.bin", "-o", "-", "--json"], capture_output=True, timeout=60, cwd=tmp_path
    )
    assert missing.returncode == 2 and missing.stdout == b""
    assert json.loads(missing.stderr.decode().strip().splitlines()[-1])["exit"] == 2
    assert list(tmp_path.iterdir()) == []


def test_regular_files_as_standard_streams_and_dash_as_a_file_name(hub: Hub, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with open(out, "wb") as stdout:  # > out.bin: a regular file, written in a thread
        done = subprocess.run(
            [*RX, "fetch", hub.url, "small.bin", "-o", "-"], stdout=stdout, stderr=subprocess.PIPE, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert sha256_file(out) == sha256_file(hub.root / "small.bin")

    with open(out, "rb") as stdin:  # < out.bin
        sent = subprocess.run(
            [*RX, "send", hub.url, "-", "--name", "from-a-file.bin", "--json"],
            stdin=stdin,
            capture_output=True,
            timeout=60,
        )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sha256"] == sha256_file(hub.inbox / "from-a-file.bin") == sha256_file(out)

    named = subprocess.run(
        [*RX, "fetch", hub.url, "small.bin", "-o", "./-"], capture_output=True, timeout=60, cwd=tmp_path
    )
    assert named.returncode == 0 and sha256_file(tmp_path / "-") == sha256_file(hub.root / "small.bin")


def test_what_standard_streams_cannot_do_is_refused_before_dialing(hub: Hub, tmp_path: Path) -> None:
    nameless = subprocess.run(
        [*RX, "send", hub.url, "-"], capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL
    )
    assert nameless.returncode == 1 and "--name NAME" in nameless.stderr
    directory = subprocess.run(
        [*RX, "fetch", hub.url, "dir/", "-o", "-"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert directory.returncode == 1 and "is a directory" in directory.stderr and directory.stdout == ""
    shared = subprocess.run(
        [*RX, "fetch", hub.url, "small.bin", "-o", "-", "--shared"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert shared.returncode == 1 and "--shared" in shared.stderr
    assert list(tmp_path.iterdir()) == []
