"""``fetch URL PATH --source URL2 …`` through real ``rxchannel serve`` processes (issue 30):
``--json``'s ``"sources"``, a source that cannot be dialed, and a worker that serves what
it fetched to the next worker."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxchannel.cli import main
from rxchannel.files import sha256_file
from tests.support import make_file

RX = [sys.executable, "-m", "rxchannel"]
SIZE = 3 * 1024 * 1024


@contextlib.contextmanager
def serving(root: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", "--processes", "1", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_file(tmp_path / "root" / "f.bin", SIZE, seed=30)
    return tmp_path / "root"


def fetch(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RX, "fetch", *argv, "--json"], capture_output=True, text=True, timeout=120)


def test_json_lists_every_source_with_its_bytes_chunks_and_why_it_was_dropped(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_file(other / "f.bin", SIZE, seed=31)  # the same name, another file
    with serving(root) as a, serving(root) as b, serving(other) as c:
        out = tmp_path / "out.bin"
        done = fetch(a, "f.bin", "-o", str(out), "--source", b, "--source", c, "--source", "tcp://127.0.0.1:1")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["sha256"] == sha256_file(root / "f.bin") == sha256_file(out)
    sources = summary["sources"]
    assert [s["url"] for s in sources] == [a, b, c, "tcp://127.0.0.1:1"]
    assert set(sources[0]) == {"url", "bytes", "chunks", "dropped"}
    assert sources[0]["dropped"] is None and sources[1]["dropped"] is None
    assert sources[0]["bytes"] + sources[1]["bytes"] == SIZE and sources[0]["chunks"] + sources[1]["chunks"] == 48
    assert sources[2] == {
        "url": c,
        "bytes": 0,
        "chunks": 0,
        "dropped": "its file's SHA-256 differs from the authority's",
    }
    assert sources[3]["dropped"].startswith("unreachable: ")


def test_a_worker_serves_what_it_fetched_to_the_next_worker(root: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    with serving(root) as hub:
        assert fetch(hub, "f.bin", "-o", f"{first}/").returncode == 0
        with serving(first) as worker:  # the first worker's download directory, served
            out = tmp_path / "second.bin"
            done = fetch(hub, "f.bin", "-o", str(out), "--source", worker)
    assert done.returncode == 0, done.stderr
    sources = json.loads(done.stdout)["sources"]
    assert sources[1]["url"] == worker and sources[1]["chunks"] > 0 and sources[1]["dropped"] is None
    assert sha256_file(out) == sha256_file(root / "f.bin")


def test_source_is_for_one_file(root: Path, tmp_path: Path) -> None:
    code = main(["fetch", "tcp://127.0.0.1:1", "dir/", "--source", "tcp://127.0.0.1:2", "-o", str(tmp_path)])
    assert code == 1
    code = main(["fetch", "tcp://127.0.0.1:1", "f.bin", "--source", "tcp://127.0.0.1:1", "-o", str(tmp_path / "x")])
    assert code == 1


def test_the_progress_line_says_how_many_sources_feed_it() -> None:
    from rxchannel.cli.progress import Bar

    shown: list[str] = []

    class Rich:
        def update(self, task: object, **fields: object) -> None:
            if "description" in fields:
                shown.append(str(fields["description"]))

    bar = Bar(Rich(), 0, "f.bin")
    bar.feeding(3)
    bar.note("reconnecting…")
    bar.feeding(2)
    bar.note(None)
    assert shown == ["f.bin (3 sources)", "f.bin (reconnecting…, 3 sources)", "f.bin (reconnecting…, 2 sources)",
                     "f.bin (2 sources)"]  # fmt: skip


def test_a_hub_killed_midway_is_dropped_and_its_chunks_come_from_the_other(root: Path, tmp_path: Path) -> None:
    from tests.support import wait_until

    hubs = []
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sourcehub", str(root), "--delay", "0.02"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        assert proc.stdout is not None
        hubs.append((proc, proc.stdout.readline().strip()))
    try:
        out = tmp_path / "out.bin"
        worker = subprocess.Popen(
            [*RX, "fetch", hubs[0][1], "f.bin", "-o", str(out), "--source", hubs[1][1], "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        part = out.with_name("out.bin.part")
        # the part is sparse: its allocated blocks are the chunks written (both hubs serve at one pace)
        wait_until(
            lambda: part.exists() and part.stat().st_blocks * 512 >= 16 * 64 * 1024, timeout=30, what="16 chunks in"
        )
        hubs[1][0].kill()  # the second hub dies with its share (24 chunks at 20 ms each) under way
        stdout, stderr = worker.communicate(timeout=60)
    finally:
        for proc, _ in hubs:
            proc.kill()
            proc.wait()
    assert worker.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["sha256"] == sha256_file(root / "f.bin") == sha256_file(out)
    first, killed = summary["sources"]
    assert killed["dropped"] and 0 < killed["chunks"] < 24 and first["chunks"] + killed["chunks"] == 48, summary
