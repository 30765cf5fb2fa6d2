"""A real headless Chromium as a worker: the page served by the hub fetches over WebRTC with credits.

Chromium comes from Debian's ``chromium`` package (``make test`` installs it). It is driven
over the DevTools protocol on 127.0.0.1 with aiohttp; all traffic stays on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rxchannel.files import Hub, sha256_file
from rxchannel.runtime import Server, serve
from rxchannel.transports import TransportOptions
from rxchannel.web import WorkerPage
from tests.support import eventually, make_file

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=900,700",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Browser:
    """A headless Chromium on one URL, with a DevTools session for evaluating and screenshots."""

    def __init__(self, url: str):
        self.url = url
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="rxchannel-chromium-")
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Browser:
        assert CHROMIUM, "Debian's chromium is required: `make test` installs it (apt-get install chromium)"
        self.proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--remote-debugging-port={self.port}",
            f"--user-data-dir={self.profile}",
            self.url,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return self

    async def _devtools(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/json/list") as response:
                        pages = [p for p in await response.json() if p["type"] == "page"]
                    if pages:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"]) as ws:
                await ws.send_json({"id": 1, "method": method, "params": params})
                while True:
                    message = await ws.receive_json()
                    if message.get("id") == 1:
                        return dict(message["result"])

    async def evaluate(self, expression: str) -> Any:
        result = await self._devtools("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        result = await self._devtools("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(result["data"]))

    def kill(self) -> None:
        """Like closing the tab without goodbye: the process vanishes, nothing is sent."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def __aexit__(self, *exc_info: object) -> None:
        self.kill()
        if self.proc is not None:
            await self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Served:
    """A hub serving over WebRTC with its worker page."""

    def __init__(self, server: Server, page: WorkerPage):
        self.server, self.page = server, page
        self.url, self.peers = server.url, server.peers


@pytest.fixture
async def hub_service(tmp_path: Path) -> AsyncIterator[tuple[Hub, Served]]:
    root = tmp_path / "root"
    make_file(root / "big.bin", 4 * 1024 * 1024, seed=11)
    make_file(root / "paced.bin", 2 * 1024 * 1024, seed=12)
    hub = Hub(root, chunk_size=32 * 1024)
    page = WorkerPage()
    server = await serve(hub.router, transport="webrtc", options=TransportOptions(http_setup=page.setup))
    try:
        yield hub, Served(server, page)
    finally:
        await server.close()


async def report_of(service: Served, timeout: float = 60) -> dict[str, Any]:
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    service.page.on_report = lambda report: got.done() or got.set_result(report)
    async with asyncio.timeout(timeout):
        return await got


async def test_a_browser_fetches_a_file_verified_within_its_grants(hub_service: Any) -> None:
    hub, service = hub_service
    async with Browser(f"{service.url}/?fetch=big.bin&window=8&report=1"):
        report = await report_of(service)
    assert "error" not in report, report
    assert report["verified"] and report["bytes"] == 4 * 1024 * 1024
    assert report["sha256"] == sha256_file(hub.root / "big.bin")
    assert report["stats"]["violations"] == 0, "the hub sent more than the page granted"
    assert report["stats"]["maxInFlight"] <= 8


async def test_a_slow_page_keeps_the_hub_read_offset_within_its_window(hub_service: Any) -> None:
    hub, service = hub_service
    chunk, window = 32 * 1024, 4
    worst = -1
    async with Browser(f"{service.url}/?fetch=paced.bin&window={window}&delay=15&report=1"):
        reporting = asyncio.ensure_future(report_of(service))
        while not reporting.done():
            for source in list(hub.sources):
                for peer in list(service.peers):
                    for sid in peer.connection.stream_ids():
                        state = peer.connection.stream(sid)
                        if state is None:
                            continue
                        granted = state.send_credit.sent + state.send_credit.available
                        read_chunks = -(-(source.read_offset) // chunk)
                        worst = max(worst, read_chunks - granted)
            await asyncio.sleep(0.005)
        report = reporting.result()
    assert report["verified"], report
    assert worst >= -window, "no sample was taken during the transfer"
    assert worst <= 1, f"the hub read {worst} chunks beyond what the page had granted"
    assert report["stats"]["maxInFlight"] <= window


async def test_closing_the_tab_frees_the_hub_stream_and_file_within_the_keepalive_deadline(
    hub_service: Any, tmp_path: Path
) -> None:
    hub, service = hub_service
    lifetime_ms = 2000
    async with Browser(f"{service.url}/?fetch=paced.bin&window=4&delay=50&lifetime={lifetime_ms}") as browser:
        async with asyncio.timeout(30):
            while not hub.sources or next(iter(hub.sources)).read_offset < 256 * 1024:
                await asyncio.sleep(0.02)
        # the page shows progress mid-transfer (and this is the README's screenshot)
        status = await browser.evaluate("document.getElementById('status').textContent")
        value = await browser.evaluate("[document.getElementById('bar').value, document.getElementById('bar').max]")
        assert "MB/s" in status and 0 < value[0] < value[1], (status, value)
        await browser.screenshot(tmp_path / "worker-page.png")
        assert (tmp_path / "worker-page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        source = next(iter(hub.sources))
        (hub_side,) = service.peers
        browser.kill()
        async with asyncio.timeout(15):
            error = await hub_side.wait_closed()
            await source.closed.wait()
        await eventually(lambda: not service.peers and not hub.sources, what="the hub freeing the dead tab")
    # freed by the deadline the page's SETUP asked for, not by chance
    assert "keepalive limit 2.0 s" in str(error), error
    if os.environ.get("RXCHANNEL_SCREENSHOT"):
        with contextlib.suppress(OSError):
            shutil.copy(tmp_path / "worker-page.png", os.environ["RXCHANNEL_SCREENSHOT"])
