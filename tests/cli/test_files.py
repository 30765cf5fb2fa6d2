"""Files on disk as a user meets them through the CLI (issue 14): no-clobber, ``-o DIR``, one
writer per output, nothing left behind by a refusal, resumes reported, directories, ``ls``.

A real hub process (``rxchannel serve --transport tcp``) and real worker commands.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxchannel.cli import main
from rxchannel.files import sha256_file
from tests.support import make_file, wait_until

RX = [sys.executable, "-m", "rxchannel"]


def _serve(root: Path, transport: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", "--transport", transport, "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    yield proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-files") / "root"
    make_file(root / "a.bin", 300_000, seed=1)
    make_file(root / "big.bin", 16 << 20, seed=2)
    make_file(root / "sub" / "x.bin", 70_000, seed=3)
    make_file(root / "sub" / "deeper" / "y.txt", 12, seed=4)
    # names a hub cannot serve (issue 11, case 20): not UTF-8, and a path too long for a route tag
    os.makedirs(root / "odd", exist_ok=True)
    with open(os.path.join(os.fsencode(root / "odd"), b"caf\xe9.bin"), "wb") as handle:
        handle.write(b"latin-1 name")
    long_dir = root / "odd" / ("d" * 120) / ("e" * 120)
    make_file(long_dir / "long.bin", 5, seed=5)
    return root


@pytest.fixture(scope="module")
def url(root: Path) -> Iterator[str]:
    yield from _serve(root, "tcp")


def fetch(url: str, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RX, "fetch", url, path, *args], capture_output=True, text=True, timeout=120)


def test_an_existing_file_is_never_replaced_without_force(url: str, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.bin"
    out.write_bytes(b"mine")
    done = fetch(url, "a.bin", "-o", str(out))
    assert done.returncode == 1
    assert "already exists; it was not replaced (add --force" in done.stderr
    assert out.read_bytes() == b"mine" and not list(tmp_path.glob("*.part"))
    done = fetch(url, "a.bin", "-o", str(out), "--force")
    assert done.returncode == 0, done.stderr
    assert sha256_file(out) == sha256_file(root / "a.bin")


def test_output_into_a_directory(url: str, root: Path, tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    assert fetch(url, "sub/x.bin", "-o", str(existing)).returncode == 0
    assert sha256_file(existing / "x.bin") == sha256_file(root / "sub" / "x.bin")
    assert fetch(url, "a.bin", "-o", str(tmp_path / "new") + "/").returncode == 0
    assert sha256_file(tmp_path / "new" / "a.bin") == sha256_file(root / "a.bin")


def test_two_fetches_to_one_output_never_interleave(url: str, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "big.bin"
    cmd = [*RX, "fetch", url, "big.bin", "-o", str(out), "--window", "1"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (tmp_path / "big.bin.part").exists(), what="the first fetch to start writing")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 1
    assert "being written by another transfer" in second.stderr or "already exists" in second.stderr
    assert sha256_file(out) == sha256_file(root / "big.bin")


def test_a_resume_is_reported_and_a_part_longer_than_the_file_starts_over(url: str, root: Path, tmp_path: Path) -> None:
    data = (root / "a.bin").read_bytes()
    (tmp_path / "a.bin.part").write_bytes(data[:100_000])
    done = fetch(url, "a.bin", "-o", str(tmp_path / "a.bin"))
    assert done.returncode == 0, done.stderr
    assert "resuming a.bin from 97.7 KiB" in done.stderr and "resumed from 97.7 KiB" in done.stdout
    assert sha256_file(tmp_path / "a.bin") == sha256_file(root / "a.bin")

    (tmp_path / "b.bin.part").write_bytes(data + b"extra bytes from a lying hub, long ago")
    done = fetch(url, "a.bin", "-o", str(tmp_path / "b.bin"), "--json")
    assert done.returncode == 0, done.stderr
    assert "started b.bin over from the beginning" in done.stderr
    assert json.loads(done.stdout)["resumed_from"] == 0
    assert sha256_file(tmp_path / "b.bin") == sha256_file(root / "a.bin")


def test_a_directory_is_fetched_file_by_file_and_checked_when_fetched_again(
    url: str, root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = fetch(url, "sub/", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == 2
    for name in ("x.bin", "deeper/y.txt"):
        assert sha256_file(out / name) == sha256_file(root / "sub" / name)

    again = fetch(url, "sub/", "-o", str(out), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["unchanged"] == 2  # compared by digest, not sent

    (out / "deeper" / "y.txt").write_bytes(b"local edit!!")  # same size, other content
    conflict = fetch(url, "sub/", "-o", str(out))
    assert conflict.returncode == 1
    assert "differ from the hub's" in conflict.stderr and "nothing was fetched" in conflict.stderr
    assert (out / "deeper" / "y.txt").read_bytes() == b"local edit!!"
    forced = fetch(url, "sub/", "-o", str(out), "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout) | {"files": 1, "unchanged": 1} == json.loads(
        forced.stdout
    )
    assert sha256_file(out / "deeper" / "y.txt") == sha256_file(root / "sub" / "deeper" / "y.txt")


def test_ls_lists_what_can_be_fetched_and_says_what_it_left_out(
    url: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ls", url, "--json"]) == 0
    out, err = capsys.readouterr()
    entries = [json.loads(line) for line in out.splitlines()]
    assert {e["path"] for e in entries} == {"a.bin", "big.bin", "sub/x.bin", "sub/deeper/y.txt"}
    assert all(e["size"] == (root / e["path"]).stat().st_size for e in entries)
    assert "left out 1 name(s) it cannot serve (not UTF-8)" in err
    assert "left out 1 name(s) it cannot serve (longer than a route allows)" in err
    assert main(["ls", url, "sub/"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[1] for line in out.splitlines()] == ["sub/deeper/y.txt", "sub/x.bin"]
    assert "2 file(s), 68.4 KiB" in err


def test_ctrl_c_keeps_the_part_and_says_how_to_resume(url: str, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    proc = subprocess.Popen(
        [*RX, "fetch", url, "big.bin", "-o", str(out), "--window", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: part.exists() and part.stat().st_size > 0, what="the fetch to write")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert re.fullmatch(
        rf"rxchannel: interrupted; run the same command again to resume from {re.escape(str(part))} "
        r"\([\d.]+ KiB received\)\n",
        err,
    ), err
    assert part.exists() and not out.exists()
    done = fetch(url, "big.bin", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert sha256_file(out) == sha256_file(root / "big.bin")


@pytest.mark.parametrize("suffix", ["", "/", "/rsocket", "/rsocket/"])
def test_websocket_urls_with_or_without_the_path(suffix: str, root: Path, tmp_path: Path) -> None:
    for printed in _serve(root, "ws"):
        base = printed.removesuffix("/rsocket")
        done = fetch(base + suffix, "a.bin", "-o", str(tmp_path / "a.bin"))
        assert done.returncode == 0, done.stderr
