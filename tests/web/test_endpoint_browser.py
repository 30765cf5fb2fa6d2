"""The worker page and an endpoint, in a real headless Chromium (issue 27): the page reads
an endpoint's JSON through ``hub.endpoint()``, streams an endpoint's body into its storage
(OPFS) at its disk's pace, checked by WebCrypto against the upstream's own digest, and
each row says what its stream is. The upstream is a real aiohttp server in this process;
the hub serves WebRTC and its direct WebSocket, which the page takes."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import quote

from rxchannel.hub import Hub
from tests.chromium import Chromium
from tests.endpoints.upstream import Upstream, expected
from tests.web.test_browser import opfs_sha256, serving, transfers, until

READ = 64 * 1024
ONE_RECV = 256 * 1024


async def test_the_page_reads_an_endpoints_json_and_streams_its_body_to_storage_at_its_pace(tmp_path: Path) -> None:
    size, window = 4 << 20, 8
    (tmp_path / "root").mkdir()
    async with Upstream() as upstream:
        hub = Hub(tmp_path / "root", inbox=tmp_path / "inbox", endpoints={"api": f"{upstream.url}/v1"})
        async with serving(hub) as served:
            path = f"api/big?size={size}"
            page = f"{served.url}/?endpoint={quote(path, safe='/')}&window={window}&delay=10&report=1"
            async with Chromium(page) as browser:
                reporting = asyncio.ensure_future(served.report())
                await until(browser, "rxchannelPage.status()[0]?.state === 'receiving'")
                samples, worst = 0, -1 << 62
                while not reporting.done():
                    exchanges = list(hub.endpoints.exchanges)
                    read = exchanges[0].bytes_read if exchanges else None  # the hub first: the page's count only grows
                    rows = await transfers(browser)
                    if read is None or rows[0]["state"] != "receiving":
                        continue
                    worst = max(worst, read - rows[0]["written"])
                    samples += 1
                report = reporting.result()
                assert report["ok"], report
                assert report["path"] == f"endpoints/{path}" and report["bytes"] == size
                assert report["sha256"] == expected(size)  # the page's own digest of what it wrote
                assert report["type"] == "endpoint" and report["httpStatus"] == 200
                assert report["stats"]["violations"] == 0 and report["via"] == "direct"
                # the file in the browser's storage, hashed by WebCrypto, is the upstream's body
                stored = await browser.evaluate(opfs_sha256(quote(f"endpoints/{path}", safe="")))
                assert stored.get("sha256") == expected(size) and stored.get("size") == size, stored
                # the hub read no further than the page had written + its window + the chunk on its way
                # to disk + aiohttp's buffer and one socket read
                print(f"\npage at 10 ms per chunk, window {window}: {samples} samples, hub at most {worst} bytes ahead")
                assert samples >= 5, f"only {samples} samples mid-transfer"
                bound = (window + 2) * READ + 2 * READ + ONE_RECV
                assert worst <= bound, f"the hub read {worst} bytes past the page's disk (bound {bound})"
                row = await browser.evaluate("document.querySelector('tr[data-kind=endpoint] td.path').textContent")
                assert row.endswith("(endpoint · HTTP 200)"), row

                # hub.endpoint(): a Response whose json() pulls the body
                got = await browser.evaluate(
                    """(async () => {
                        const init = { headers: { accept: "application/json" } };
                        const r = await rxchannelPage.endpoint("api", "/items?x=1", init);
                        return { status: r.status, type: r.headers.get("content-type"), body: await r.json(),
                                 kind: r.rxchannel.info.type };
                    })()"""
                )
                assert got["status"] == 200 and got["kind"] == "endpoint"
                assert got["type"].startswith("application/json")
                assert got["body"] == {"items": [1, 2, 3], "query": [["x", "1"]]}
                missing = await browser.evaluate(
                    """(async () => {
                        const r = await rxchannelPage.endpoint("api", "status/404");
                        return { status: r.status, ok: r.ok, text: await r.text() };
                    })()"""
                )
                assert missing == {"status": 404, "ok": False, "text": "status 404: the service says no\nsecond line\n"}
                refused = await browser.evaluate(
                    """rxchannelPage.endpoint("api", "%2e%2e/elsewhere").then(() => "answered", (e) => e.message)"""
                )
                assert "'.' and '..' are not allowed" in refused
                # a streamed upload from the page, checked by the upstream's digest
                upload = await browser.evaluate(
                    """(async () => {
                        const blob = new Blob([new Uint8Array(300000).fill(42)]);
                        const r = await rxchannelPage.endpoint("api", "upload", { method: "POST", body: blob });
                        return await r.json();
                    })()"""
                )
                assert upload["bytes"] == 300000 and upload["length"] == 300000
                assert upload["sha256"] == hashlib.sha256(bytes([42]) * 300000).hexdigest()
                # the page offers the hub's endpoints
                names = await until(
                    browser,
                    "!document.getElementById('endpoints').hidden && "
                    "[...document.querySelectorAll('#endpoint-name option')].map(o => o.value)",
                )
                assert names == ["api"]
