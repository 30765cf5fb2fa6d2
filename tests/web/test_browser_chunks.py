"""Issue 30 in a real Chromium: the page's storage worker checks every chunk against the hub's
manifest before writing it (opfs-worker.js, manifest.js, blake3.js)."""

from __future__ import annotations

import json
from pathlib import Path

from rxchannel.files import Manifest, ManifestCache, sha256_file
from rxchannel.hub import Hub, HubLimits
from tests.chromium import Chromium
from tests.support import make_file
from tests.web.test_browser import CHUNK, Served, opfs_sha256, served, serving, until  # noqa: F401 (a fixture)

SIZE = 4 * 1024 * 1024


class _Twin(ManifestCache):
    """The manifests of the true files, for a hub that serves other bytes."""

    def __init__(self, root: Path, good: Path):
        super().__init__(base=CHUNK)
        self.root, self.good = root, good

    async def get(self, path: Path) -> Manifest:
        return await super().get(self.good / path.relative_to(self.root))


async def test_a_chunk_that_does_not_match_fails_the_page_fetch_naming_it(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    data = bytearray(make_file(good / "f.bin", SIZE, seed=30))
    data[20 * CHUNK + 99] ^= 0x01
    bad.mkdir()
    (bad / "f.bin").write_bytes(bytes(data))
    hub = Hub(bad, inbox=tmp_path / "inbox", limits=HubLimits(chunk_size=CHUNK))
    hub.manifests = _Twin(hub.root, good.resolve())
    async with serving(hub) as lying, Chromium(f"{lying.url}/?fetch=f.bin&window=4&report=1") as browser:
        report = await lying.report()
        assert report["ok"] is False and "chunk 20 " in report["error"], report
        (row,) = await until(browser, "rxchannelPage.status().filter(t => t.state === 'failed')")
        assert row["written"] == 20 * CHUNK, "the chunks before it are kept; the bad one was never written"
        source = lying.sources[0]
        assert source.read_offset <= 21 * CHUNK + 5 * CHUNK, "the hub sent at most a window past the lie"


async def test_a_tampered_partial_copy_resumes_from_the_last_good_chunk(served: Served) -> None:  # noqa: F811
    async with Chromium(f"{served.url}/?fetch=big.bin&window=4&delay=10&via=webrtc&report=1") as browser:
        await served.first_source(at_least=1024 * 1024)
        (hub_side,) = served.peers
        await hub_side.close()
        assert (await served.report())["ok"] is False
        (row,) = await until(browser, "rxchannelPage.status().filter(t => t.state === 'failed')")
        assert row["written"] > 10 * CHUNK
        # one byte changed in chunk 9 of the partial copy, as a disk or another program might
        tamper = """(async () => {
            const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("rxchannel");
            const part = await dir.getFileHandle("big.bin.part");
            const bytes = new Uint8Array(await (await part.getFile()).arrayBuffer());
            const writable = await part.createWritable({ keepExistingData: true });
            await writable.write({ type: "write", position: AT, data: new Uint8Array([bytes[AT] ^ 1]) });
            await writable.close();
            return bytes.length;
        })()""".replace("AT", str(9 * CHUNK + 123))
        assert await browser.evaluate(tamper) == row["written"]
        await browser.evaluate("document.querySelector('tr[data-state=failed] button.retry').click()")
        resumed = await served.report()
        assert resumed["ok"], resumed
        assert resumed["resumedFrom"] == 9 * CHUNK, "kept the chunks before the tampered one, not the rest"
        assert resumed["sha256"] == sha256_file(served.hub.root / "big.bin")
        stored = await browser.evaluate(opfs_sha256("big.bin"))
        assert stored.get("sha256") == resumed["sha256"], json.dumps(stored)
