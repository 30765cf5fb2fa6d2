"""A real headless Chromium as a worker: the hub's page streams files to disk over WebRTC.

Chromium is Debian's ``chromium`` (``make test`` installs it), driven over DevTools by
:class:`rxchannel.web.chromium.Chromium`; the hub is real aiortc; files are real files on
both sides (OPFS in the browser's profile). Every wait is on a condition (a page state, a
hub-side event), never a fixed sleep. ``RXCHANNEL_SCREENSHOTS=docs`` copies the page's
screenshots (mid-transfer, verified, failed) to ``docs/`` for the README.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rxchannel.core import with_secret
from rxchannel.files import sha256_file
from rxchannel.files.source import FileSource
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Server, serve
from rxchannel.transports import TransportOptions
from rxchannel.web import WorkerPage
from rxchannel.webrtc.aiortc_stack import rtc_peer_connection as new_peer_connection
from rxchannel.webrtc.gathering import ice_host_addresses
from rxchannel.webrtc.ice import SignalingLimits, TurnRest
from rxchannel.webrtc.options import WebRtcOptions
from rxchannel.webrtc.signaling import WebRtcListener, check_turn
from tests.chromium import Chromium
from tests.support import eventually, interface_address, make_file

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
    """A hub serving over WebRTC with its worker page; reports arrive on a queue.

    :attr:`requests` is every HTTP request the hub answered: ``(method, path and query,
    headers, status)``.
    """

    def __init__(
        self, hub: Hub, server: Server, page: WorkerPage, requests: list[tuple[str, str, dict[str, str], int]]
    ):
        self.hub, self.server, self.page, self.requests = hub, server, page, requests
        self.url, self.peers = server.url, server.peers
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        page.on_report = self.reports.put_nowait
        hub.sources = self.recorded = Recorded()
        assert isinstance(server.listener, WebRtcListener)
        self.listener = server.listener

    @property
    def peer_connections(self) -> int:
        """Peer connections the hub's signaling created (what offers have cost it)."""
        return sum(self.listener.answerer.created.values())

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


@contextlib.asynccontextmanager
async def serving(
    hub: Hub, *, secret: str | None = None, host: str = "127.0.0.1", **options: Any
) -> AsyncIterator[Served]:
    """``hub`` served over WebRTC with its page, as ``rxchannel serve`` sets it up: a
    ``secret`` both signs signaling and authenticates SETUP."""
    page = WorkerPage()
    requests: list[tuple[str, str, dict[str, str], int]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        requests.append((request.method, request.path_qs, dict(request.headers), response.status))

    def setup(app: web.Application) -> None:
        page.setup(app)
        app.on_response_prepare.append(record)

    server = await serve(
        hub.router,
        transport="webrtc",
        host=host,
        config=with_secret(None, secret, server=True),
        options=TransportOptions(http_setup=setup, secret=secret, webrtc=WebRtcOptions(**options)),
    )
    try:
        yield Served(hub, server, page, requests)
    finally:
        await server.close()
        hub.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    root = tmp_path / "root"
    make_file(root / "big.bin", 4 * 1024 * 1024, seed=11)
    make_file(root / "paced.bin", 2 * 1024 * 1024, seed=12)
    make_file(root / "small.txt", 100_000, seed=13)
    async with serving(Hub(root, inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=CHUNK))) as served:
        yield served


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


async def test_the_first_paint_shows_the_hubs_files_before_any_script_runs(tmp_path: Path) -> None:
    """A plain ``chromium --screenshot`` of the page (issue 32, item 8): the hub renders its files
    into the HTML, so with no script run at all (and no connection) the list is there, and the
    status line does not say it is connecting. The rows' fetch buttons work once the script
    runs, before it has refreshed the list."""
    root = tmp_path / "root"
    make_file(root / "big.bin", 3 * 1024 * 1024, seed=1)
    make_file(root / "data" / "log.txt", 1280, seed=2)  # 1.25 KiB: rounded as the script rounds (half up)
    hub = Hub(root, inbox=tmp_path / "inbox")
    async with serving(hub) as served:
        served.page.listing = hub.first_files  # as `rxchannel serve` does for a hub without a secret
        async with Chromium(f"{served.url}/", extra_flags=["--blink-settings=scriptEnabled=false"]) as browser:
            painted = await until(
                browser,
                "(rows => rows.length && [document.getElementById('status').textContent,"
                " rows.map(r => [r.dataset.path, r.cells[1].textContent])])"
                "([...document.querySelectorAll('#files tr[data-path]')])",
            )
            await browser.screenshot(tmp_path / "first-paint.png")
        assert painted == [
            "2 file(s) shared by this hub (as the page was served)",
            [["big.bin", "3.0 MiB"], ["data/log.txt", "1.3 KiB"]],
        ]
        assert not served.peers, "no script ran: nothing connected"
        keep_screenshot(tmp_path / "first-paint.png", "worker-page-first-paint.png")
        async with Chromium(f"{served.url}/") as browser:  # the script's own rows read the same
            listed = await until(
                browser,
                "document.getElementById('status').textContent.startsWith('connected') &&"
                " [...document.querySelectorAll('#files tr[data-path]')]"
                ".map(r => [r.dataset.path, r.cells[1].textContent])",
            )
            assert listed == painted[1]


async def test_a_hub_with_a_secret_paints_no_file_names(tmp_path: Path) -> None:
    """The page is served to anyone who reaches the hub; its listing needs the secret."""
    root = tmp_path / "root"
    make_file(root / "private-name.bin", 10, seed=1)
    async with (
        serving(Hub(root, inbox=tmp_path / "inbox"), secret="s3cret") as served,
        aiohttp.ClientSession() as session,
        session.get(f"{served.url}/") as response,
    ):
        page = await response.text()
    assert "private-name" not in page and "listed here once this page has connected" in page


@pytest.mark.parametrize("window, via", [("8", "webrtc"), ("auto", "webrtc"), ("8", "auto")])
async def test_a_page_streams_a_file_into_its_storage_verified_within_its_grants(
    served: Served, window: str, via: str
) -> None:
    async with Chromium(f"{served.url}/?fetch=big.bin&window={window}&via={via}&report=1") as browser:
        report = await served.report()
        assert report["ok"], report
        expected = sha256_file(served.hub.root / "big.bin")
        assert report["path"] == "big.bin" and report["bytes"] == 4 * 1024 * 1024
        assert report["sha256"] == expected
        assert report["storage"] == "opfs" and report["resumedFrom"] == 0
        assert report["stats"]["violations"] == 0, "the hub sent more than the page granted"
        assert report["window"] == (window if window == "auto" else int(window))
        # auto: the page reaches the hub's port, so it takes the direct WebSocket
        assert report["via"] == ("webrtc-host" if via == "webrtc" else "direct"), report
        if window != "auto":
            assert report["stats"]["maxInFlight"] <= int(window)
        # the copy on disk, hashed by WebCrypto (not the page's hasher): complete, no partial left
        stored = await browser.evaluate(opfs_sha256("big.bin"))
        assert stored.get("sha256") == expected, stored
        assert stored["names"] == ["big.bin"], stored
        (row,) = await transfers(browser)
        assert row["state"] == "verified" and row["written"] == 4 * 1024 * 1024


@pytest.mark.timeout(300)
async def test_fifty_fresh_page_loads_each_connect_and_fetch_verified_with_no_retry(tmp_path: Path) -> None:
    """Issue 23: the page sends SETUP the moment its channel opens, in the same SCTP packet as
    the channel's OPEN; the hub must read it every time. The hub is a real ``rxchannel serve``
    process (on uvloop, as users run it: there the race lost the SETUP of one page in two).
    Fifty fresh loads in a row, each a new peer connection fetching its own small file,
    checked on the page's disk; the page never retries by itself."""
    root, loads = tmp_path / "root", 50
    for i in range(loads):
        make_file(root / f"small{i:02}.txt", 20_000 + i, seed=100 + i)
    hub = subprocess.Popen(
        [sys.executable, "-m", "rxchannel", "serve", str(root), "--port", "0", "--offer-rate", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert hub.stdout is not None
        url = (await asyncio.to_thread(hub.stdout.readline)).strip()
        assert url.startswith("http://127.0.0.1:"), url
        async with Chromium("about:blank") as browser:
            for i in range(loads):
                name = f"small{i:02}.txt"
                await browser.send("Page.navigate", {"url": f"{url}/?fetch={name}&window=4&via=webrtc"})
                rows = await until(
                    browser,
                    f"(s => s.length && s[0].path === {json.dumps(name)} && ['verified', 'failed'].includes(s[0].state)"
                    " && s)(rxchannelPage.status())",
                    what=f"load {i} to finish",
                )
                assert rows[0]["state"] == "verified", f"load {i}: {rows[0]}"
                stored = await browser.evaluate(opfs_sha256(name))
                assert stored.get("sha256") == sha256_file(root / name), f"load {i}: {stored}"
    finally:
        hub.send_signal(signal.SIGTERM)
        _, errors = await asyncio.to_thread(hub.communicate, timeout=15)
    assert "refused the connection" not in errors, errors


async def test_a_page_fetches_from_a_hub_on_the_native_stack_verified(tmp_path: Path) -> None:
    """Chromium's libwebrtc and the hub's (reactor-webrtc): on the host's own address, since
    libwebrtc never gathers on loopback."""
    root = tmp_path / "root"
    make_file(root / "big.bin", 4 * 1024 * 1024, seed=11)
    hub = Hub(root, inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=CHUNK))
    async with serving(hub, host=interface_address(), stack="native") as served:
        # OPFS needs a secure context: an http:// page off loopback is one only when told so
        secure = [f"--unsafely-treat-insecure-origin-as-secure={served.url}"]
        async with Chromium(f"{served.url}/?fetch=big.bin&via=webrtc&report=1", extra_flags=secure) as browser:
            report = await served.report()
            assert report["ok"] and report["sha256"] == sha256_file(root / "big.bin"), report
            assert report["via"] == "webrtc-host", report
            (hub_side,) = served.peers
            assert hub_side.transport.stack == "native"
            stored = await browser.evaluate(opfs_sha256("big.bin"))
            assert stored.get("sha256") == report["sha256"], stored


@pytest.mark.parametrize("via", ["webrtc", "direct"])
async def test_the_hub_reads_no_further_than_the_page_has_written_plus_its_window(
    served: Served, tmp_path: Path, via: str
) -> None:
    window = 4
    async with Chromium(f"{served.url}/?fetch=paced.bin&window={window}&delay=15&via={via}&report=1") as browser:
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
    if via == "webrtc":
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
    async with Chromium(f"{served.url}/?fetch=big.bin&window=4&delay=10&via=webrtc&report=1") as browser:
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
    # over WebRTC: a closed tab sends nothing the hub can see; the keepalive deadline must free it
    async with Chromium(
        f"{served.url}/?fetch=paced.bin&window=4&delay=50&via=webrtc&lifetime={lifetime_ms}"
    ) as browser:
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


# ------------------------------------------------------------------ the page against main's signaling


def signed_with(requests: list[tuple[str, str, dict[str, str], int]], method: str, path: str) -> list[int]:
    """The statuses of the requests ``method path`` that carried a signature."""
    return [
        status
        for m, p, headers, status in requests
        if (m, p) == (method, path) and headers.get("Authorization", "").startswith("RXCHANNEL-HMAC-SHA256 ")
    ]


async def test_a_hub_with_a_secret_answers_only_the_page_that_signs_with_it(tmp_path: Path) -> None:
    secret = "s3cret-ünï"
    make_file(tmp_path / "root" / "small.txt", 100_000, seed=13)
    async with serving(Hub(tmp_path / "root", inbox=tmp_path / "inbox"), secret=secret) as served:
        fragment = urllib.parse.quote(secret)
        async with Chromium(f"{served.url}/?fetch=small.txt&via=webrtc&report=1#secret={fragment}") as browser:
            report = await served.report()
            assert report["ok"] and report["sha256"] == sha256_file(served.hub.root / "small.txt"), report
            (row,) = await transfers(browser)
            assert row["state"] == "verified", row
        # both signaling requests were signed, and accepted: one peer connection for one page
        assert signed_with(served.requests, "GET", "/ice-servers") == [200], served.requests
        assert signed_with(served.requests, "POST", "/offer") == [200], served.requests
        assert served.peer_connections == 1 and not served.listener.refused
        for _, path_qs, headers, _ in served.requests:  # the secret itself never crossed HTTP
            assert secret not in urllib.parse.unquote(path_qs) and fragment not in path_qs
            assert not any(secret in value or fragment in value for value in headers.values()), headers

        for given, why, todo in [
            ("#secret=wrong", "wrong shared secret", "is not the hub's"),
            ("", "requires the shared secret", "this hub needs its secret"),
        ]:
            async with Chromium(f"{served.url}/?fetch=small.txt&via=webrtc&report=1{given}") as browser:
                refused = await served.report()
                (row,) = await until(browser, "(s => s[0]?.state === 'failed' && s)(rxchannelPage.status())")
                status = await until(
                    browser, "(e => e.className === 'bad' && e.textContent)(document.getElementById('status'))"
                )
                shown = await browser.evaluate("document.querySelector('tr[data-kind=fetch] .info').textContent")
            assert refused["ok"] is False, refused
            assert refused["error"].startswith("the hub refused the request for ICE servers (401): "), refused
            assert why in refused["error"], refused
            assert row["error"] == refused["error"] and why in shown and todo in shown, (row, shown)
            assert "(401)" in status and why in status, status
        assert served.peer_connections == 1, "a page without the secret cost the hub no peer connection"
        assert served.listener.refused[401] >= 2
        offers = [status for method, path, _, status in served.requests if (method, path) == ("POST", "/offer")]
        assert offers == [200], "no offer was even sent without the secret"


@contextlib.asynccontextmanager
async def coturn(tmp_path: Path) -> AsyncIterator[tuple[TurnRest, Path]]:
    """Debian's coturn on 127.0.0.1 with TURN REST credentials (as ``make netlab`` installs it);
    yields the hub's TurnRest for it and coturn's verbose log, once it answers allocations."""
    if shutil.which("turnserver") is None:
        pytest.fail("this test needs coturn's turnserver: `make test` (make netlab) installs it")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state, log = tmp_path / "coturn", tmp_path / "coturn.log"
    state.mkdir()
    turn = TurnRest((f"turn:127.0.0.1:{port}",), "turn-" + os.urandom(8).hex(), ttl=600)
    proc = await asyncio.create_subprocess_exec(
        "turnserver", "-n", "-v", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
        "--use-auth-secret", f"--static-auth-secret={turn.secret}", "--realm=rxchannel.test", "--no-tls", "--no-dtls",
        "--no-cli", "--min-port=49152", "--max-port=49999", f"--log-file={log}", "--simple-log",
        f"--pidfile={state}/pid", f"--userdb={state}/db",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            while True:  # ready when it grants an allocation to credentials minted as the hub mints them
                try:
                    await check_turn(turn, timeout=1)
                    break
                except TimeoutError:
                    assert proc.returncode is None, f"coturn exited with {proc.returncode}"
        yield turn, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


async def test_the_page_dials_with_the_ice_servers_the_hub_hands_out(tmp_path: Path) -> None:
    make_file(tmp_path / "root" / "small.txt", 100_000, seed=13)
    async with coturn(tmp_path) as (turn, log):
        stun = turn.urls[0].replace("turn:", "stun:")  # coturn answers STUN too
        hub = Hub(tmp_path / "root", inbox=tmp_path / "inbox")
        async with serving(hub, turn=turn, ice_servers=[stun]) as served:
            async with Chromium(f"{served.url}/?fetch=small.txt&via=webrtc&report=1") as browser:
                report = await served.report()
                given = await browser.evaluate(
                    "rxchannelPage.connection().then(h => h.pc.getConfiguration().iceServers)"
                )
            assert report["ok"] and report["sha256"] == sha256_file(hub.root / "small.txt"), report
        assert [status for method, path, _, status in served.requests if path == "/ice-servers"] == [200]
        # the page's RTCPeerConnection got the hub's STUN server and a TURN credential minted for it
        (minted,) = [server for server in given if server["urls"] == list(turn.urls)]
        assert any(server["urls"] == [stun] for server in given), given
        username = minted["username"]
        expiry, user = username.split(":")
        assert user not in ("hub", "hub-check") and int(expiry) > time.time(), username
        mac = hmac.new(turn.secret.encode(), username.encode(), hashlib.sha1).digest()
        assert minted["credential"] == base64.b64encode(mac).decode()
        # and Chromium used it: coturn granted an allocation to exactly that username
        granted = f"user <{username}>: incoming packet ALLOCATE processed, success"
        await eventually(
            lambda: granted in log.read_text(errors="replace"), what="coturn granting the page's allocation"
        )


async def offer_and_never_connect(url: str) -> int:
    """POST a real aiortc offer that will never connect (it holds a pending peer connection); returns the status."""
    pc = new_peer_connection()
    pc.createDataChannel("x")
    with ice_host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as session:
            offer = {"type": "offer", "sdp": pc.localDescription.sdp}
            async with session.post(f"{url}/offer", json=offer) as response:
                return response.status
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("limits", "status", "said", "todo"),
    [
        (
            SignalingLimits(offer_rate=0.01, offer_burst=1),
            429,
            "too many offers from 127.0.0.1: the limit is 0.01/s per address, 1 at once (raise it with --offer-rate)",
            "this browser's address sent too many requests: wait ",
        ),
        (
            # the one pending slot of this address (a full hub would make room: issue 26)
            SignalingLimits(max_pending=1, max_pending_per_address=1),
            429,
            "1 WebRTC offers from 127.0.0.1 are pending, the limit per address is 1 (raise it with "
            "--max-pending-offers)",
            "this browser's address sent too many requests: wait ",
        ),
    ],
    ids=["rate-limited", "pending"],
)
async def test_a_refused_offer_shows_the_hubs_reason_and_when_to_retry_in_the_row(
    tmp_path: Path, limits: SignalingLimits, status: int, said: str, todo: str
) -> None:
    make_file(tmp_path / "root" / "small.txt", 100_000, seed=13)
    async with serving(Hub(tmp_path / "root", inbox=tmp_path / "inbox"), signaling=limits) as served:
        assert await offer_and_never_connect(served.url) == 200  # takes the one token / the one pending slot
        async with Chromium(f"{served.url}/?fetch=small.txt&via=webrtc&report=1") as browser:
            refused = await served.report()
            (row,) = await until(browser, "(s => s[0]?.state === 'failed' && s)(rxchannelPage.status())")
            shown = await browser.evaluate("document.querySelector('tr[data-kind=fetch] .info').textContent")
        assert refused["ok"] is False and refused["error"].startswith(f"the hub refused the offer ({status}): {said}")
        assert re.search(r"\(retry after \d+ s\)$", refused["error"]), refused
        assert refused["error"] in shown and todo in shown, shown
        assert served.listener.refused[status] == 1 and served.peer_connections == 1, "only the first offer's"


async def test_the_page_lists_every_page_of_a_long_listing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    names = ["a.bin", "b/c.bin", "b/d.bin", "e.txt", "f/g/h.bin"]
    for number, name in enumerate(names):
        make_file(root / name, 2000 * (number + 1), seed=number)
    hub = Hub(root, inbox=tmp_path / "inbox", limits=HubLimits(max_list=2))  # three pages of at most two
    async with serving(hub) as served, Chromium(f"{served.url}/") as browser:
        listed = await until(
            browser,
            "(rows => rows.length >= 5 && rows.map(r => [r.dataset.path, r.cells[1].textContent]))"
            "([...document.querySelectorAll('#files tr[data-path]')])",
        )
    assert listed == [[name, f"{2000 * (number + 1) / 1024:.1f} KiB"] for number, name in enumerate(names)]


async def test_a_push_announces_its_size_and_a_name_in_use_is_refused_with_the_hubs_reason(tmp_path: Path) -> None:
    make_file(tmp_path / "root" / "small.txt", 1000, seed=1)
    inbox = tmp_path / "inbox"
    taken = make_file(inbox / "taken.bin", 10, seed=2)
    hub = Hub(tmp_path / "root", inbox=inbox, limits=HubLimits(max_upload=64 * 1024))
    async with serving(hub) as served, Chromium(f"{served.url}/") as browser:
        await until(browser, "!document.getElementById('send').disabled")
        ids = [
            await browser.evaluate(f"rxchannelPage.pushFile({name!r}, new Blob([new Uint8Array({size})]))")
            for name, size in [("taken.bin", 1000), ("too-big.bin", 100_000), ("new.bin", 1000)]
        ]
        rows = [
            await browser.evaluate(f"rxchannelPage.transfer({i}).done.then(() => rxchannelPage.status()[{i} - 1])")
            for i in ids
        ]
    taken_row, big_row, new_row = rows
    assert taken_row["state"] == "failed", taken_row
    assert "the hub refused: inbox/taken.bin already exists" in taken_row["detail"], taken_row
    assert "rename the file or pick another" in taken_row["detail"], taken_row
    assert (inbox / "taken.bin").read_bytes() == taken, "the file already there is untouched"
    # refused up front, from the size the page announced (received bytes would say "exceeds")
    assert big_row["state"] == "failed", big_row
    assert "the upload is 100000 bytes; this hub accepts at most 65536 (--max-upload)" in big_row["detail"], big_row
    assert not (inbox / "too-big.bin").exists()
    assert new_row["state"] == "verified" and (inbox / "new.bin").read_bytes() == bytes(1000), new_row
