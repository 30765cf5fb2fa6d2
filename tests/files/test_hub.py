"""The file-sharing hub over real aiortc DataChannels on loopback (and memory where noted)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.core import Role
from rxchannel.files import FileSink, IntegrityError, TooLargeError, fetch_file, push_file, sha256_file
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Peer
from rxchannel.webrtc.signaling import datachannel_pair
from tests.support import eventually, make_file

CHUNK = 16 * 1024


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    make_file(r / "small.bin", 300_000, seed=1)
    make_file(r / "sub" / "nested.txt", 5_000, seed=2)
    make_file(r / "empty.bin", 0)
    make_file(tmp_path / "secret.txt", 100, seed=3)
    (r / "link_out").symlink_to(tmp_path / "secret.txt")
    (r / "link_in").symlink_to(r / "sub" / "nested.txt")
    return r


@pytest.fixture
async def hub_and_client(root: Path, tmp_path: Path) -> AsyncIterator[tuple[Hub, Peer, Peer]]:
    hub = Hub(root, inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=CHUNK, max_buffer=100_000))
    a, b = await datachannel_pair()
    server = Peer(b, Role.SERVER, router=hub.router)
    client = Peer(a, Role.CLIENT)
    yield hub, client, server
    await client.close()
    await server.close()


async def test_fetch_over_a_datachannel_is_verified_and_atomic(
    hub_and_client: tuple[Hub, Peer, Peer], root: Path, tmp_path: Path
) -> None:
    hub, client, server = hub_and_client
    out = tmp_path / "got" / "small.bin"
    result = await fetch_file(client, "small.bin", out, window=4)
    assert out.read_bytes() == (root / "small.bin").read_bytes()
    assert result.sha256 == sha256_file(root / "small.bin") and result.received == 300_000
    assert not out.with_name("small.bin.part").exists()
    # empty files and symlinks that stay inside the root work too
    assert (await fetch_file(client, "empty.bin", tmp_path / "e.bin")).size == 0
    assert (await fetch_file(client, "link_in", tmp_path / "l.txt")).size == 5_000


async def test_list_and_buffers(hub_and_client: tuple[Hub, Peer, Peer], root: Path) -> None:
    hub, client, server = hub_and_client
    listing = json.loads((await client.request_response("files")).data)
    assert {e["path"]: e["size"] for e in listing} == {
        "empty.bin": 0,
        "link_in": 5_000,
        "small.bin": 300_000,
        "sub/nested.txt": 5_000,
    }, "link_out points outside the root and must not be listed"
    only_sub = json.loads((await client.request_response("files", json.dumps({"prefix": "sub/"}).encode())).data)
    assert [e["path"] for e in only_sub] == ["sub/nested.txt"]
    blob = await client.request_response("buffers/sub/nested.txt")
    assert blob.data == (root / "sub" / "nested.txt").read_bytes()
    with pytest.raises(rx.RemoteError, match="buffers are limited to 100000") as info:
        await client.request_response("buffers/small.bin")
    assert info.value.code == rx.ErrorCode.REJECTED


async def test_push_into_the_inbox(hub_and_client: tuple[Hub, Peer, Peer], tmp_path: Path) -> None:
    hub, client, server = hub_and_client
    local = tmp_path / "upload.bin"
    data = make_file(local, 200_000, seed=9)
    receipt = await push_file(client, local, "reports/upload.bin", chunk_size=CHUNK)
    stored = tmp_path / "inbox" / "reports" / "upload.bin"
    assert stored.read_bytes() == data
    assert receipt == {"path": "reports/upload.bin", "size": 200_000, "sha256": sha256_file(local)}
    with pytest.raises(rx.RemoteError, match=r"contains '\.\.'"):
        await push_file(client, local, "../escape.bin")
    assert not (tmp_path / "escape.bin").exists()


TRAVERSALS = [
    ("../secret.txt", "contains '..'"),
    ("sub/../../secret.txt", "contains '..'"),
    ("..\\secret.txt", "contains '..'"),
    ("/etc/passwd", "is absolute"),
    ("\\\\server\\share\\x", "is absolute"),
    ("C:\\Windows\\win.ini", "is absolute"),
    ("C:relative", "is absolute"),
    ("link_out", "resolves outside the hub's root"),
    ("nul\x00byte", "NUL byte"),
    ("", "empty path"),
    ("does/not/exist", "no such file"),
    ("sub", "'sub' is a directory, not a file: name it 'sub/'"),
]


@pytest.mark.parametrize("path, reason", TRAVERSALS, ids=[repr(p) for p, _ in TRAVERSALS])
async def test_paths_outside_the_root_are_refused_with_a_reason(
    hub_and_client: tuple[Hub, Peer, Peer], tmp_path: Path, path: str, reason: str
) -> None:
    hub, client, server = hub_and_client
    for route in (f"files/{path}", f"buffers/{path}"):
        with pytest.raises(rx.RemoteError) as info:
            if route.startswith("files/"):
                await client.request_stream(route).collect()
            else:
                await client.request_response(route)
        assert info.value.code == rx.ErrorCode.REJECTED
        assert reason in info.value.message
        assert str(tmp_path) not in info.value.message, "a local path leaked to the peer"
    assert not hub.sources


async def test_cancel_mid_transfer_closes_the_hub_file_and_frees_the_stream(
    hub_and_client: tuple[Hub, Peer, Peer],
) -> None:
    hub, client, server = hub_and_client
    stream = client.request_stream("files/small.bin", window=2)
    await stream.next()
    (source,) = hub.sources
    await stream.aclose()
    async with asyncio.timeout(5):
        await source.closed.wait()
    await eventually(
        lambda: not server.connection.open_streams and not hub.sources, what="the hub forgetting the stream"
    )
    assert source.read_offset < 300_000
    assert client.connection.open_streams == 0


async def test_interrupted_fetch_leaves_a_part_and_the_next_fetch_resumes(
    hub_and_client: tuple[Hub, Peer, Peer], root: Path, tmp_path: Path
) -> None:
    hub, client, server = hub_and_client
    out = tmp_path / "resume.bin"
    written = 0

    def progress(done: int, total: int | None, credits: int) -> None:
        nonlocal written
        written = done
        if done >= 5 * CHUNK:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-transfer

    with pytest.raises(KeyboardInterrupt):
        await fetch_file(client, "small.bin", out, window=2, progress=progress)
    part = out.with_name("resume.bin.part")
    assert part.stat().st_size == written == 5 * CHUNK and not out.exists()
    result = await fetch_file(client, "small.bin", out, window=8)
    assert result.resumed_from == 5 * CHUNK and result.received == 300_000 - 5 * CHUNK
    assert out.read_bytes() == (root / "small.bin").read_bytes() and not part.exists()


async def test_a_part_that_is_not_a_prefix_of_the_hubs_file_restarts_from_zero(
    hub_and_client: tuple[Hub, Peer, Peer], root: Path, tmp_path: Path
) -> None:
    """The resume request carries the part's SHA-256; the hub starts over when it no longer matches."""
    hub, client, server = hub_and_client
    for name, part in [("bad.bin", b"\xff" * 1000), ("long.bin", b"\x00" * 400_000)]:  # changed; longer than the file
        out = tmp_path / name
        out.with_name(name + ".part").write_bytes(part)
        result = await fetch_file(client, "small.bin", out)
        assert result.restarted and result.resumed_from == 0 and result.received == 300_000
        assert out.read_bytes() == (root / "small.bin").read_bytes()
        assert not out.with_name(name + ".part").exists() and not out.with_name(name + ".corrupt").exists()


async def test_corruption_in_transit_is_caught_by_the_end_to_end_digest(root: Path, tmp_path: Path) -> None:
    """A hub that alters a chunk (but announces the real digest) never yields a verified file."""
    hub = Hub(root, limits=HubLimits(chunk_size=CHUNK))

    async def lying(request: rx.Request) -> AsyncIterator[rx.Payload]:
        async for i, item in _enumerate(await hub.stream_file(request)):
            yield rx.Payload(item.data[::-1] if i == 2 else item.data, item.metadata)

    router = rx.Router()
    router.stream("files/")(lying)
    a, b = await datachannel_pair()
    server, client = Peer(b, Role.SERVER, router=router), Peer(a, Role.CLIENT)
    try:
        out = tmp_path / "bad.bin"
        with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
            await fetch_file(client, "small.bin", out)
        assert not out.exists() and out.with_name("bad.bin.corrupt").exists()
    finally:
        await client.close()
        await server.close()


async def _enumerate(items: AsyncIterator[rx.Payload]) -> AsyncIterator[tuple[int, rx.Payload]]:
    i = 0
    async for item in items:
        yield i, item
        i += 1


async def test_demand_reaches_the_disk_with_a_slow_worker(hub_and_client: tuple[Hub, Peer, Peer]) -> None:
    """Flow control (docs/architecture.md): the hub's read offset never exceeds (consumed + outstanding + 1) chunks."""
    hub, client, server = hub_and_client
    window = 3
    stream = client.request_stream("files/small.bin", window=window, auto_ack=False)
    checks = 0
    async for _item in stream:
        await asyncio.sleep(0.005)  # a slow disk on the worker
        stream.ack()
        (source,) = hub.sources or (None,)
        demand = client.connection.demand(stream.stream_id)
        if source is None or demand is None:
            continue
        read_chunks = -(-source.read_offset // CHUNK)
        # a file source knows its last chunk, so it never reads ahead of what was granted
        assert read_chunks <= demand.acked_total + demand.in_flight
        assert read_chunks <= demand.acked_total + window
        checks += 1
    assert checks >= 10


async def test_a_directory_fetch_passes_its_options_to_each_file_and_refuses_unknown_ones(
    hub_and_client: tuple[Hub, Peer, Peer], root: Path, tmp_path: Path
) -> None:
    from rxchannel.files import fetch_directory

    hub, client, server = hub_and_client
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\): windw"):
        await fetch_directory(client, "sub", tmp_path / "d", windw=8)  # type: ignore[call-arg]
    assert not (tmp_path / "d").exists(), "refused at the call, before anything is fetched"
    seen: list[int] = []
    result = await fetch_directory(client, "sub", tmp_path / "d", window=2, progress=lambda done, *_: seen.append(done))
    assert (tmp_path / "d" / "nested.txt").read_bytes() == (root / "sub" / "nested.txt").read_bytes()
    assert seen and seen[-1] == 5_000 and len(result.fetched) == 1


async def test_fetch_refused_and_missing_files_leave_nothing_behind(
    hub_and_client: tuple[Hub, Peer, Peer], tmp_path: Path
) -> None:
    hub, client, server = hub_and_client
    out = tmp_path / "nothing.bin"
    with pytest.raises(rx.RemoteError, match="no such file"):
        await fetch_file(client, "missing.bin", out)
    assert not out.exists()


async def test_file_sink_refuses_more_bytes_than_announced(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "x.bin")
    await sink.open()
    from rxchannel.core import request_metadata

    await sink.write(rx.Payload(b"abc", request_metadata(None, {"size": 3, "offset": 0})))
    with pytest.raises(IntegrityError, match="received 4 bytes for a file announced as 3"):
        await sink.write(rx.Payload(b"d"))
    await sink.abort()
    # a lying sender's bytes are set aside, never left as a part that blocks later honest fetches
    assert (tmp_path / "x.bin.corrupt").exists()
    assert not (tmp_path / "x.bin.part").exists() and not (tmp_path / "x.bin").exists()


async def test_with_a_slow_disk_credit_comes_back_only_for_items_on_disk(
    hub_and_client: tuple[Hub, Peer, Peer], root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow disk: credit comes back only for items written, so the hub never reads more than
    the window past what is on the worker's disk."""
    import time

    import rxchannel.files.sink as sink_module

    hub, client, server = hub_and_client
    real = sink_module._write_and_hash
    trips: list[int] = []
    ahead: list[int] = []  # chunks the hub has read beyond those on the worker's disk

    def slow_disk(handle: object, digest: object, chunks: list[bytes], wrote: list[int]) -> None:
        time.sleep(0.01)  # the hub goes on reading meanwhile, as far as the credit lets it
        for source in hub.sources:
            ahead.append(-(-source.read_offset // CHUNK) - sum(trips))
        trips.append(len(chunks))
        real(handle, digest, chunks, wrote)  # type: ignore[arg-type]

    monkeypatch.setattr(sink_module, "_write_and_hash", slow_disk)
    window = 4
    out = tmp_path / "slow.bin"
    result = await fetch_file(client, "small.bin", out, window=window)
    assert out.read_bytes() == (root / "small.bin").read_bytes() and result.sha256 == sha256_file(out)
    chunks = -(-300_000 // CHUNK)
    assert trips == [1] * chunks  # one item per trip to the disk thread
    assert ahead and max(ahead) <= window


async def test_write_many_writes_the_items_before_a_refused_one_and_not_it(tmp_path: Path) -> None:
    from rxchannel.core import request_metadata

    sink = FileSink(tmp_path / "x.bin", max_size=10)
    await sink.open()
    first = rx.Payload(b"abcd", request_metadata(None, {"size": 12, "offset": 0}))
    with pytest.raises(TooLargeError, match="announced as 12 bytes, more than the 10 allowed"):
        await sink.write_many([first])
    await sink.abort()

    sink = FileSink(tmp_path / "y.bin")
    await sink.open()
    first = rx.Payload(b"abc", request_metadata(None, {"size": 5, "offset": 0}))
    with pytest.raises(IntegrityError, match="received 6 bytes for a file announced as 5"):
        await sink.write_many([first, rx.Payload(b"d"), rx.Payload(b"ef"), rx.Payload(b"g")])
    assert sink.written == 4  # "abc" and "d" are on disk; "ef" was refused, "g" never looked at
    await sink.abort()
    assert (tmp_path / "y.bin.corrupt").read_bytes() == b"abcd"


async def test_a_write_cancelled_mid_trip_waits_for_its_thread_and_counts_what_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling a fetch while its disk thread writes: the thread finishes before the cancel goes
    on, so the part that abort() keeps holds exactly the bytes the sink counted."""
    import time

    import rxchannel.files.sink as sink_module
    from rxchannel.core import request_metadata

    real = sink_module._write_and_hash

    def slow_disk(handle: object, digest: object, chunks: list[bytes], wrote: list[int]) -> None:
        for chunk in chunks:
            time.sleep(0.03)
            real(handle, digest, [chunk], wrote)  # type: ignore[arg-type]

    monkeypatch.setattr(sink_module, "_write_and_hash", slow_disk)
    sink = FileSink(tmp_path / "x.bin")
    await sink.open()
    items = [rx.Payload(b"a" * 10, request_metadata(None, {"size": 40, "offset": 0}))]
    items += [rx.Payload(bytes([98 + i]) * 10) for i in range(3)]
    writing = asyncio.ensure_future(sink.write_many(items))
    await asyncio.sleep(0.04)  # mid-trip: the first chunk is written, the second is being written
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert sink.written == 40, "the thread finished its trip before the cancellation went on"
    kept = await sink.abort()
    assert kept is not None and kept.read_bytes() == b"a" * 10 + b"b" * 10 + b"c" * 10 + b"d" * 10


def test_symlinked_root_and_inbox_are_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    make_file(real / "f.bin", 10)
    (tmp_path / "alias").symlink_to(real)
    hub = Hub(tmp_path / "alias")
    assert hub.root == real.resolve()
    assert os.path.exists(hub.root / "f.bin")
