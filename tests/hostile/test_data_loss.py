"""Hostile and careless peers (issue 11): nothing lost, nothing unbounded.

One test (or a parametrized family) per numbered case of the issue, named ``test_case_NN_*``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.files import FILE_CHANGED, fetch_file, push_file, sha256_file
from rxchannel.hub import Hub, HubLimits
from tests.support import ConnectPeers, make_file

CHUNK = 16 * 1024


# ------------------------------------------------------------------ 1. a file rewritten during a fetch


@pytest.mark.parametrize("change", ["rewritten in place", "truncated", "appended to"])
async def test_case_01_a_file_changed_while_served_fails_the_stream_and_is_never_spliced(
    connect_peers: ConnectPeers, tmp_path: Path, change: str
) -> None:
    root = tmp_path / "root"
    old = make_file(root / "f.bin", 64 * CHUNK, seed=1)
    new = hashlib.shake_256(b"new").digest(len(old))
    hub = Hub(root, inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=CHUNK))
    client, _ = await connect_peers(hub.router)
    out = tmp_path / "out.bin"
    changed = False

    def progress(done: int, total: int | None, credits: int) -> None:
        nonlocal changed
        if done >= 8 * CHUNK and not changed:  # the worker has 8 chunks (at most 11) of the old version
            changed = True
            with open(root / "f.bin", "r+b") as handle:
                if change == "rewritten in place":
                    handle.write(new)
                elif change == "truncated":
                    handle.truncate(20 * CHUNK)
                else:
                    handle.seek(0, os.SEEK_END)
                    handle.write(b"more")

    with pytest.raises(rx.RemoteError) as info:
        await fetch_file(client, "f.bin", out, window=4, progress=progress)
    assert info.value.code == FILE_CHANGED and "changed on the hub" in info.value.message
    assert not out.exists(), "nothing is presented as complete"
    # the next fetch notices that its partial copy is not a prefix of the new file and starts over
    current = (root / "f.bin").read_bytes()
    result = await fetch_file(client, "f.bin", out, window=8)
    assert out.read_bytes() == current and result.sha256 == hashlib.sha256(current).hexdigest()
    if change == "rewritten in place":
        assert result.restarted and result.resumed_from == 0
    else:  # truncated past, or appended to, what the worker had: its part is still a prefix, so it resumes
        assert not result.restarted and result.resumed_from >= 8 * CHUNK
    assert hub.sources == set(), "every source closed its file"


async def test_case_01_a_file_replaced_by_rename_while_served_arrives_as_the_old_version(
    connect_peers: ConnectPeers, tmp_path: Path
) -> None:
    """The open file is one consistent version; a rename only changes what the next fetch gets."""
    root = tmp_path / "root"
    old = make_file(root / "f.bin", 64 * CHUNK, seed=1)
    hub = Hub(root, inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=CHUNK))
    client, _ = await connect_peers(hub.router)
    changed = False

    def progress(done: int, total: int | None, credits: int) -> None:
        nonlocal changed
        if done >= 8 * CHUNK and not changed:
            changed = True
            make_file(root / "f.bin.tmp", 64 * CHUNK, seed=2)
            os.replace(root / "f.bin.tmp", root / "f.bin")

    await fetch_file(client, "f.bin", tmp_path / "out.bin", window=4, progress=progress)
    assert (tmp_path / "out.bin").read_bytes() == old


# ------------------------------------------------------------------ 2. two pushes to one inbox name


async def test_case_02_two_pushes_to_one_name_never_mix_and_the_receipt_matches_the_disk(
    connect_peers: ConnectPeers, tmp_path: Path
) -> None:
    root, inbox = tmp_path / "root", tmp_path / "inbox"
    root.mkdir()
    hub = Hub(root, inbox=inbox, limits=HubLimits(chunk_size=CHUNK))
    client, _ = await connect_peers(hub.router)
    other, _ = await connect_peers(hub.router)
    a = make_file(tmp_path / "a.bin", 40 * CHUNK, seed=1)
    b = make_file(tmp_path / "b.bin", 50 * CHUNK, seed=2)
    results = await asyncio.gather(
        push_file(client, tmp_path / "a.bin", "same.bin", chunk_size=CHUNK),
        push_file(other, tmp_path / "b.bin", "same.bin", chunk_size=CHUNK),
        return_exceptions=True,
    )
    receipts = [r for r in results if isinstance(r, dict)]
    refusals = [r for r in results if isinstance(r, rx.RemoteError)]
    assert len(receipts) == 1 and len(refusals) == 1, results
    assert refusals[0].code == rx.ErrorCode.REJECTED and "already exists" in refusals[0].message
    stored = (inbox / "same.bin").read_bytes()
    assert stored in (a, b), "the stored file is exactly one sender's file"
    assert receipts[0]["sha256"] == sha256_file(inbox / "same.bin") == hashlib.sha256(stored).hexdigest()
    assert sorted(p.name for p in inbox.iterdir()) == ["same.bin"], "no partial upload left behind"


async def test_case_02_a_push_to_an_existing_name_is_refused_before_any_byte_is_written(
    connect_peers: ConnectPeers, tmp_path: Path
) -> None:
    (tmp_path / "root").mkdir()
    inbox = tmp_path / "inbox"
    kept = make_file(inbox / "x.bin", 100, seed=1)
    hub = Hub(tmp_path / "root", inbox=inbox)
    client, _ = await connect_peers(hub.router)
    make_file(tmp_path / "x.bin", 5000, seed=2)
    with pytest.raises(rx.RemoteError, match="already exists"):
        await push_file(client, tmp_path / "x.bin")
    assert (inbox / "x.bin").read_bytes() == kept and sorted(p.name for p in inbox.iterdir()) == ["x.bin"]
