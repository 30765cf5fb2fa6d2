"""A real headless Chromium as a worker: the hub's page streams files to disk over WebRTC.

Chromium is Debian's ``chromium`` (``make test`` installs it), driven over DevTools by
:class:`rxchannel.web.chromium.Chromium`; the hub is real aiortc; files are real files on
both sides (OPFS in the browser's profile). Every wait is on a condition (a page state, a
hub-side event), never a fixed sleep. ``RXCHANNEL_SCREENSHOTS=docs`` copies the page's
screenshots (mid-transfer, verified, failed) to ``docs/`` for the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rxchannel.core import with_secret
from rxchannel.files import Hub, sha256_file
from rxchannel.files.source import FileSource
from rxchannel.runtime import Server, serve
from rxchannel.transports import TransportOptions
from rxchannel.web import WorkerPage
from rxchannel.web.chromium import Chromium
from tests.support import eventually, make_file

CHUNK = 32 * 1024


class Recorded(set[FileSource]):
    """The hub's set of open file sources, remembering every source ever added, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[FileSource] = []

    def add(self, source: FileSource) -> None:
        super().add(source)
        self.seen.append(source)


class Served:
    """A hub serving over WebRTC with its worker page; reports arrive on a queue."""

    def __init__(self, hub: Hub, server: Server, page: WorkerPage):
        self.hub, self.server, self.page = hub, server, page
        self.url, self.peers = server.url, server.peers
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        page.on_report = self.reports.put_nowait
        hub.sources = self.recorded = Recorded()

    @property
    def sources(self) -> list[FileSource]:
        """Every file source the hub opened, in order (the hub's own set forgets closed ones)."""
        return self.recorded.seen

    async def report(self, timeout: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return await self.reports.get()

    async def first_source(self, at_least: int = 0, timeout: float = 30) -> FileSource:
        """The first file source that has read ``at_least`` bytes (waits for it)."""

        def found() -> bool:
            return any(s.read_offset >= at_least for s in self.sources)

        await eventually(found, timeout=timeout, what=f"a hub file source past {at_least} bytes")
        return next(s for s in self.sources if s.read_offset >= at_least)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    root = tmp_path / "root"
    make_file(root / "big.bin", 4 * 1024 * 1024, seed=11)
    make_file(root / "paced.bin", 2 * 1024 * 1024, seed=12)
    make_file(root / "small.txt", 100_000, seed=13)
    hub = Hub(root, inbox=tmp_path / "inbox", chunk_size=CHUNK)
    page = WorkerPage()
    server = await serve(hub.router, transport="webrtc", options=TransportOptions(http_setup=page.setup))
    try:
        yield Served(hub, server, page)
    finally:
        await server.close()


async def until(browser: Chromium, expression: str, *, timeout: float = 30, what: str | None = None) -> Any:
    """Evaluate ``expression`` in the page until it is truthy; returns its value."""
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(Exception):  # the page may still be loading
                value = await browser.evaluate(expression)
                if value:
                    return value
            await asyncio.sleep(0.02)


async def transfers(browser: Chromium) -> list[dict[str, Any]]:
    return list(await browser.evaluate("rxchannelPage.status()"))


def opfs_sha256(name: str) -> str:
    """JS: the SHA-256 (WebCrypto, not the page's own code) of a file in the page's OPFS folder, or null."""
    return f"""(async () => {{
        const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("rxchannel");
        const names = [];
        for await (const key of dir.keys()) names.push(key);
        if (!names.includes({json.dumps(name)})) return {{ names }};
        const file = await (await dir.getFileHandle({json.dumps(name)})).getFile();
        const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
        const hex = [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, "0")).join("");
        return {{ names, size: file.size, sha256: hex }};
    }})()"""


def keep_screenshot(path: Path, name: str) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("RXCHANNEL_SCREENSHOTS")
    if target:
        with contextlib.suppress(OSError):
            shutil.copy(path, Path(target) / name)


@pytest.mark.parametrize("window", ["8", "auto"])
async def test_a_page_streams_a_file_into_its_storage_verified_within_its_grants(served: Served, window: str) -> None:
    async with Chromium(f"{served.url}/?fetch=big.bin&window={window}&report=1") as browser:
        report = await served.report()
        assert report["ok"], report
        expected = sha256_file(served.hub.root / "big.bin")
        assert report["path"] == "big.bin" and report["bytes"] == 4 * 1024 * 1024
        assert report["sha256"] == expected
        assert report["storage"] == "opfs" and report["resumedFrom"] == 0
        assert report["stats"]["violations"] == 0, "the hub sent more than the page granted"
        assert report["window"] == (window if window == "auto" else int(window))
        if window != "auto":
            assert report["stats"]["maxInFlight"] <= int(window)
        # the copy on disk, hashed by WebCrypto (not the page's hasher): complete, no partial left
        stored = await browser.evaluate(opfs_sha256("big.bin"))
        assert stored.get("sha256") == expected, stored
        assert stored["names"] == ["big.bin"], stored
        (row,) = await transfers(browser)
        assert row["state"] == "verified" and row["written"] == 4 * 1024 * 1024


async def test_the_hub_reads_no_further_than_the_page_has_written_plus_its_window(
    served: Served, tmp_path: Path
) -> None:
    window = 4
    async with Chromium(f"{served.url}/?fetch=paced.bin&window={window}&delay=15&report=1") as browser:
        reporting = asyncio.ensure_future(served.report())
        source = await served.first_source()
        samples, worst = 0, -1 << 62
        while not reporting.done():
            read = source.read_offset  # the hub first: the page's count only grows after this
            rows = await transfers(browser)
            if not rows or rows[0]["state"] != "receiving":
                continue
            written = rows[0]["written"]
            worst = max(worst, read - written)
            samples += 1 if 0 < written < 2 * 1024 * 1024 else 0
            if written >= 1024 * 1024 and not (tmp_path / "receiving.png").exists():
                await browser.evaluate("rxchannelPage.transfer(1).render()")  # the row as of now, not its last tick
                await browser.screenshot(tmp_path / "receiving.png")
        report = reporting.result()
    assert report["ok"], report
    assert samples >= 5, f"only {samples} samples were taken mid-transfer"
    bound = (window + 1) * CHUNK
    assert worst <= bound, f"the hub read {worst} bytes past what the page had written (bound {bound})"
    keep_screenshot(tmp_path / "receiving.png", "worker-page-receiving.png")


async def test_cancel_stops_the_stream_and_frees_the_hubs_file(served: Served) -> None:
    async with Chromium(f"{served.url}/?fetch=paced.bin&window=4&delay=50") as browser:
        source = await served.first_source(at_least=CHUNK)
        await until(browser, "rxchannelPage.status()[0]?.state === 'receiving'")
        await browser.evaluate("document.querySelector('tr[data-kind=fetch] button.cancel').click()")
        async with asyncio.timeout(15):
            await source.closed.wait()
        await eventually(lambda: not served.hub.sources, what="the hub closing the cancelled file")
        (row,) = await until(browser, "(s => s[0].state === 'cancelled' && s)(rxchannelPage.status())")
        assert "press retry to resume" in row["detail"], row
        assert source.read_offset < 2 * 1024 * 1024, "cancelled before the end"
        assert len(served.peers) == 1, "cancel ends the stream, not the connection"


async def test_an_interrupted_fetch_resumes_from_the_partial_file_and_verifies(served: Served, tmp_path: Path) -> None:
    size = 4 * 1024 * 1024
    async with Chromium(f"{served.url}/?fetch=big.bin&window=4&delay=10&report=1") as browser:
        await served.first_source(at_least=1024 * 1024)
        (hub_side,) = served.peers
        await hub_side.close()  # the network drops the connection mid-transfer
        failed = await served.report()
        assert failed["ok"] is False and "DataChannel closed" in failed["error"], failed
        (row,) = await until(browser, "rxchannelPage.status().filter(t => t.state === 'failed')")
        assert 0 < row["written"] < size and "press retry to resume" in row["detail"], row
        color = await browser.evaluate("getComputedStyle(document.querySelector('tr[data-state=failed] .state')).color")
        assert color == "rgb(176, 0, 32)", "a failure is shown in red"
        await browser.screenshot(tmp_path / "failed.png")
        await browser.evaluate("document.querySelector('tr[data-state=failed] button.retry').click()")
        resumed = await served.report()
        assert resumed["ok"], resumed
        assert resumed["sha256"] == sha256_file(served.hub.root / "big.bin")
        assert resumed["bytes"] == size and resumed["resumedFrom"] == row["written"], (resumed, row)
        assert [s.offset for s in served.sources] == [0, row["written"]], "the second request started at the offset"
        stored = await browser.evaluate(opfs_sha256("big.bin"))
        assert stored.get("sha256") == resumed["sha256"] and stored["names"] == ["big.bin"], stored
        await browser.screenshot(tmp_path / "verified.png")
    keep_screenshot(tmp_path / "failed.png", "worker-page-failed.png")
    keep_screenshot(tmp_path / "verified.png", "worker-page-verified.png")


async def test_a_killed_tab_leaves_a_partial_file_that_the_next_page_resumes(served: Served, tmp_path: Path) -> None:
    size, profile = 4 * 1024 * 1024, tmp_path / "profile"
    async with Chromium(f"{served.url}/?fetch=big.bin&window=4&delay=10", profile=profile) as browser:
        await until(browser, "rxchannelPage.status()[0]?.written >= 1048576")
        browser.kill()  # no goodbye, no chance to close or flush anything
    async with Chromium(f"{served.url}/?fetch=big.bin&window=8&report=1", profile=profile):
        report = await served.report()
    assert report["ok"] and report["sha256"] == sha256_file(served.hub.root / "big.bin"), report
    assert 1024 * 1024 <= report["resumedFrom"] < size, report
    assert served.sources[-1].offset == report["resumedFrom"], "the hub sent only the rest"


async def test_a_push_from_the_page_is_stored_in_the_inbox_verified(served: Served) -> None:
    size = 3 * 1024 * 1024 + 123
    expected = bytes((i * 31 + 7) & 255 for i in range(size))
    async with Chromium(f"{served.url}/") as browser:
        await until(browser, "!document.getElementById('send').disabled")
        ident = await browser.evaluate(f"""(() => {{
            const bytes = new Uint8Array({size});
            for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 255;
            return rxchannelPage.pushFile("from-page.bin", new Blob([bytes]));
        }})()""")
        await browser.evaluate(f"rxchannelPage.transfer({ident}).done")
        row = (await transfers(browser))[0]
    stored = served.hub.inbox / "from-page.bin"
    assert row["state"] == "verified", row
    assert stored.read_bytes() == expected
    assert row["sha256"] == hashlib.sha256(expected).hexdigest()


async def test_the_buttons_show_each_transfer_in_its_own_row_and_failures_instead_of_freezing(served: Served) -> None:
    async with Chromium(f"{served.url}/") as browser:
        await until(browser, "document.querySelectorAll('#files tr[data-path]').length === 3")
        (served.hub.root / "small.txt").unlink()  # listed, then gone: the hub refuses it
        for path in ("big.bin", "paced.bin", "small.txt"):
            await browser.evaluate(f"document.querySelector('#files tr[data-path=\"{path}\"] button.fetch').click()")
        rows = await until(
            browser,
            "(s => s.length === 3 && s.every(t => ['verified', 'failed'].includes(t.state)) && s)"
            "(rxchannelPage.status())",
            timeout=60,
        )
    states = {row["path"]: (row["state"], row["detail"]) for row in rows}
    assert states["big.bin"][0] == "verified" and states["paced.bin"][0] == "verified", states
    assert states["small.txt"][0] == "failed", states
    assert "the hub refused: no such file" in states["small.txt"][1], states


async def test_closing_the_tab_frees_the_hub_stream_and_file_within_the_keepalive_deadline(served: Served) -> None:
    lifetime_ms = 2000
    async with Chromium(f"{served.url}/?fetch=paced.bin&window=4&delay=50&lifetime={lifetime_ms}") as browser:
        source = await served.first_source(at_least=256 * 1024)
        (hub_side,) = served.peers
        browser.kill()
        async with asyncio.timeout(15):
            error = await hub_side.wait_closed()
            await source.closed.wait()
        await eventually(lambda: not served.peers and not served.hub.sources, what="the hub freeing the dead tab")
    # freed by the deadline the page's SETUP asked for, not by chance
    assert "keepalive limit 2.0 s" in str(error), error


async def test_a_hub_with_a_secret_serves_pages_that_carry_it_and_refuses_the_others(tmp_path: Path) -> None:
    make_file(tmp_path / "root" / "small.txt", 100_000, seed=13)
    hub = Hub(tmp_path / "root", inbox=tmp_path / "inbox")
    page = WorkerPage()
    reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    page.on_report = reports.put_nowait
    config = with_secret(None, "s3cret", server=True)
    server = await serve(hub.router, transport="webrtc", config=config, options=TransportOptions(http_setup=page.setup))
    try:
        async with Chromium(f"{server.url}/?fetch=small.txt&report=1#secret=s3cret"):
            async with asyncio.timeout(30):
                report = await reports.get()
        assert report["ok"] and report["sha256"] == sha256_file(hub.root / "small.txt"), report
        async with Chromium(f"{server.url}/?fetch=small.txt&report=1#secret=wrong"):
            async with asyncio.timeout(30):
                refused = await reports.get()
        assert refused["ok"] is False and "refused this page's SETUP" in refused["error"], refused
        assert "wrong shared secret" in refused["error"], refused
    finally:
        await server.close()
