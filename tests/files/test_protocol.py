"""The JSON of a ``files/<path>`` stream (:mod:`rxchannel.files.protocol`): what the requester
writes is what the hub reads, each malformed request is refused by the real hub with
ERROR[INVALID] saying why, and the file info round-trips from source to sink."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import ApplicationError, ErrorCode, Role, request_metadata
from rxchannel.files import FileSink, IntegrityError
from rxchannel.files._common import item_info
from rxchannel.files.protocol import FileInfo, FileRequest, announced_digest, digest_info
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair
from tests.support import make_file

CHUNK = 1024
SIZE = 5 * CHUNK + 7


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Peer]:
    make_file(tmp_path / "root" / "f.bin", SIZE, seed=25)
    hub = Hub(tmp_path / "root", limits=HubLimits(chunk_size=CHUNK))
    a, b = memory_pair()
    server, peer = Peer(b, Role.SERVER, router=hub.router), Peer(a, Role.CLIENT)
    yield peer
    await peer.close()
    await server.close()


@pytest.mark.parametrize(
    "request_",
    [FileRequest(), FileRequest(10, "ab" * 32), FileRequest(0, end=CHUNK), FileRequest(3, "0" * 64, 9)],
)
def test_a_request_reads_back_as_written(request_: FileRequest) -> None:
    assert FileRequest.from_bytes(request_.to_bytes()) == request_


def test_the_whole_file_is_asked_for_with_empty_data() -> None:
    assert FileRequest().to_bytes() == b""
    assert FileRequest(5, "a" * 64).to_bytes() == b'{"offset": 5, "sha256": "' + b"a" * 64 + b'"}'
    assert FileRequest(0, end=8).to_bytes() == b'{"offset": 0, "end": 8}'


REFUSED = [
    (b"not json", 'request data must be JSON {"offset": N, "sha256": "<hex of those N bytes>"}'),
    (b"[1, 2]", "request data must be JSON"),
    (b'{"offset": -1}', "offset must be a non-negative integer, got -1"),
    (b'{"offset": true}', "offset must be a non-negative integer, got True"),
    (b'{"offset": "5"}', "offset must be a non-negative integer, got 5"),
    (b'{"offset": 10, "end": 9}', "end must be an integer not before offset (a range [offset, end))"),
    (b'{"offset": 0, "end": 1.5}', "end must be an integer not before offset"),
    (b'{"offset": 4, "sha256": "abc"}', "sha256 must be the 64-character hex digest of the first offset bytes"),
    (b'{"offset": 4, "sha256": 7}', "sha256 must be the 64-character hex digest"),
]


@pytest.mark.parametrize(("data", "words"), REFUSED)
def test_a_malformed_request_is_refused_as_invalid(data: bytes, words: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        FileRequest.from_bytes(data)
    assert refused.value.code == ErrorCode.INVALID and words in str(refused.value)


@pytest.mark.parametrize(
    ("data", "words"), [*REFUSED, (b'{"offset": 99999, "end": 100000}', "is past the end of the file")]
)
async def test_the_hub_refuses_a_malformed_request_with_invalid(client: Peer, data: bytes, words: str) -> None:
    with pytest.raises(rx.RemoteError) as refused:
        await client.request_stream("files/f.bin", data).collect()
    assert refused.value.code == ErrorCode.INVALID and words in refused.value.message, refused.value


async def test_the_hub_serves_what_a_request_asks_for(client: Peer, tmp_path: Path) -> None:
    content = (tmp_path / "root" / "f.bin").read_bytes()
    ranged = await client.request_stream("files/f.bin", FileRequest(CHUNK, end=3 * CHUNK).to_bytes()).collect()
    assert b"".join(p.data for p in ranged) == content[CHUNK : 3 * CHUNK]
    prefix = hashlib.sha256(content[:100]).hexdigest()
    resumed = await client.request_stream("files/f.bin", FileRequest(100, prefix).to_bytes()).collect()
    assert b"".join(p.data for p in resumed) == content[100:]
    first = FileInfo.from_info(item_info(resumed[0]))
    assert first == FileInfo(SIZE, 100)
    assert announced_digest(item_info(resumed[-1])) == hashlib.sha256(content).hexdigest()
    changed = await client.request_stream("files/f.bin", FileRequest(100, "0" * 64).to_bytes()).collect()
    restarted = FileInfo.from_info(item_info(changed[0]))
    assert restarted.offset == 0 and restarted.restart


@pytest.mark.parametrize(
    "info", [FileInfo(10), FileInfo(10, 4), FileInfo(None), FileInfo(10, 0, 8), FileInfo(10, 0, restart="changed")]
)
def test_file_info_reads_back_as_written(info: FileInfo) -> None:
    assert FileInfo.from_info(info.to_info()) == info
    assert announced_digest(info.to_info()) is None
    assert announced_digest({**info.to_info(), **digest_info("ab" * 32)}) == "ab" * 32


@pytest.mark.parametrize(
    ("info", "words"),
    [
        ({"type": "buffer"}, "the sender sent a 'buffer' stream, not a file"),
        ({"size": -1}, "the sender announced an impossible size: -1"),
        ({"size": True}, "the sender announced an impossible size: True"),
        ({"size": 3, "offset": "0"}, "the sender announced an impossible offset: 0"),
    ],
)
async def test_a_sink_refuses_impossible_file_info(tmp_path: Path, info: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FileInfo.from_info(info)
    sink = FileSink(tmp_path / "out.bin")
    await sink.open()
    with pytest.raises(IntegrityError, match=words):
        await sink.write(rx.Payload(b"abc", request_metadata(None, info)))
    await sink.abort()
