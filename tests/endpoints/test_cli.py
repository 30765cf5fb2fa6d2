"""``rxchannel serve --endpoint`` and ``rxchannel fetch URL endpoints/NAME/PATH`` as real
processes, in front of a real upstream (this test's aiohttp server): the body verified on
disk, an error status as exit 2 with the status and the body's first line (and no file),
an unreachable upstream as exit 4, events through standard output as they come."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.endpoints.upstream import Upstream, expected

RX = [sys.executable, "-m", "rxchannel"]


@dataclass
class Run:
    code: int
    out: str
    err: str


async def run(*args: str, timeout: float = 60) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *RX, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@dataclass
class HubProcess:
    url: str
    upstream: Upstream
    root: Path


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubProcess]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    async with Upstream() as upstream:
        (tmp_path / "root").mkdir()
        proc = await asyncio.create_subprocess_exec(
            *RX,
            "serve",
            str(tmp_path / "root"),
            "--port",
            "0",
            "--processes",
            "1",
            "--endpoint",
            f"api={upstream.url}/v1",
            "--endpoint",
            f"down=http://127.0.0.1:{closed}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
            assert url.startswith("http://"), url
            yield HubProcess(url, upstream, tmp_path / "root")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 15)


async def test_fetch_writes_an_endpoints_body_to_a_file_and_says_what_it_got(hub: HubProcess, tmp_path: Path) -> None:
    size = 8 << 20
    out = tmp_path / "body.bin"
    done = await run("fetch", hub.url, f"endpoints/api/big?size={size}", "-o", str(out), "--json", "--window", "4")
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert summary["type"] == "endpoint" and summary["status"] == 200 and summary["bytes"] == size
    assert summary["content_type"] == "application/octet-stream" and summary["path"] == "direct"
    assert summary["sha256"] == expected(size) == hashlib.sha256(out.read_bytes()).hexdigest()
    assert not list(tmp_path.glob("*.part"))
    plain = await run("fetch", hub.url, "endpoints/api/items", "-o", str(tmp_path) + "/")
    assert plain.code == 0, plain.err
    assert "endpoint api, HTTP 200 (application/json; charset=utf-8)" in plain.out
    assert json.loads((tmp_path / "items").read_text())["items"] == [1, 2, 3]
    # a file says what it is too
    (hub.root / "f.txt").write_text("a file\n")
    file = await run("fetch", hub.url, "f.txt", "-o", str(tmp_path / "f.txt"), "--json")
    assert file.code == 0, file.err
    assert json.loads(file.out)["type"] == "file"


async def test_an_error_status_exits_2_with_the_status_and_the_first_line_and_writes_nothing(
    hub: HubProcess, tmp_path: Path
) -> None:
    out = tmp_path / "missing.txt"
    done = await run("fetch", hub.url, "endpoints/api/status/404", "-o", str(out))
    assert done.code == 2, done.err
    assert "HTTP 404 Not Found: status 404: the service says no" in done.err
    assert "second line" not in done.err
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    failed = await run("fetch", hub.url, "endpoints/api/status/500", "-o", str(out), "--json")
    assert failed.code == 2
    assert json.loads(failed.out)["error"].endswith("HTTP 500 Internal Server Error: status 500: the service says no")


async def test_an_unreachable_upstream_exits_4_and_a_path_out_of_the_endpoint_exits_2(
    hub: HubProcess, tmp_path: Path
) -> None:
    down = await run("fetch", hub.url, "endpoints/down/x", "-o", str(tmp_path / "x"))
    assert down.code == 4, down.err
    assert "endpoint 'down': cannot connect to its upstream (connection refused); run the same command again" in (
        down.err
    )
    out = await run("fetch", hub.url, "endpoints/api/%2e%2e/elsewhere", "-o", str(tmp_path / "y"))
    assert out.code == 2 and "'.' and '..' are not allowed" in out.err
    assert "/elsewhere" not in hub.upstream.requests


async def test_events_come_through_standard_output(hub: HubProcess) -> None:
    done = await run("fetch", hub.url, "endpoints/api/events?count=200", "-o", "-")
    assert done.code == 0, done.err
    assert done.out == "".join(f"id: {i}\ndata: event {i}\n\n" for i in range(200))


async def test_serve_refuses_an_endpoint_it_cannot_serve(tmp_path: Path) -> None:
    done = await run("serve", str(tmp_path), "--endpoint", "api=ftp://host/x")
    assert done.code == 1
    assert "must be http://HOST:PORT[/prefix]" in done.err
