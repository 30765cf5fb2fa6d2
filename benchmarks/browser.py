"""Browser worker: renderer memory and throughput, streaming to disk vs the old buffered page.

``python -m benchmarks.browser [--sizes 64MiB,1GiB,3GiB] [--buffered-max 1GiB] [--rounds N] [--json]``

A hub in this process serves sparse files over WebRTC (aiortc, loopback ICE); for each size
a fresh headless Chromium (Debian's ``chromium``) fetches the file in job mode and reports:

* **streaming**: today's page (``/?fetch=PATH&window=N&report=1``): the hub's ReadableStream
  piped into an OPFS file, hashed incrementally, verified;
* **buffered**: the page as it was before (``benchmarks/browser_baseline/``, served at
  ``/baseline/``): every chunk kept in memory, one Blob, WebCrypto digest at the end.

Per run: the page's own transfer time (first request to verified), MB/s, and the renderer's
peak resident set (VmHWM of Chromium's renderer processes, read before the browser exits).
Modes alternate within each round; the table shows medians. The buffered page is not run
past ``--buffered-max``: it needs ~3x the file in renderer memory and fails after the whole
transfer at 2 GiB and beyond (``blob.arrayBuffer()``), so a 3 GiB buffered run would only
measure that failure after minutes of swapping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from rxchannel.hub import Hub
from rxchannel.runtime import serve
from rxchannel.transports import TransportOptions
from rxchannel.web import WorkerPage
from tests.chromium import Chromium, chromium_path

from ._report import emit_json, print_table

BASELINE = Path(__file__).resolve().parent / "browser_baseline"
UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_size(text: str) -> int:
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def label(size: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if size >= UNITS[unit] and size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]} {unit}"
    return f"{size} B"


class Bench:
    """A hub with the worker page and the baseline page; reports from both land on queues."""

    def __init__(self, root: Path):
        self.hub = Hub(root)
        self.page = WorkerPage()
        self.streaming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.buffered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.page.on_report = self.streaming.put_nowait

    def setup(self, app: web.Application) -> None:
        self.page.setup(app)
        index = (BASELINE / "index.html").read_bytes()
        module = (BASELINE / "rxchannel.js").read_bytes()

        async def baseline(_request: web.Request) -> web.Response:
            return web.Response(body=index, content_type="text/html")

        async def baseline_module(_request: web.Request) -> web.Response:
            return web.Response(body=module, content_type="text/javascript")

        async def baseline_report(request: web.Request) -> web.Response:
            self.buffered.put_nowait(json.loads(await request.read()))
            return web.json_response({"ok": True})

        app.router.add_get("/baseline/", baseline)
        app.router.add_get("/baseline/rxchannel.js", baseline_module)
        app.router.add_post("/baseline/report", baseline_report)


async def run_once(bench: Bench, url: str, mode: str, name: str, size: int, window: str) -> dict[str, Any]:
    if mode == "streaming":
        page, queue = f"{url}/?fetch={name}&window={window}&report=1&lifetime=30000", bench.streaming
    else:
        page, queue = f"{url}/baseline/?fetch={name}&window=16&report=1&lifetime=30000", bench.buffered
    timeout = 120 + size / 2e6  # generous: 2 MB/s
    async with Chromium(page) as browser:
        try:
            async with asyncio.timeout(timeout):
                report = await queue.get()
        except TimeoutError:
            report = {"ok": False, "error": f"no report within {timeout:.0f} s"}
        rss = browser.renderer_peak_rss()
        cpu = browser.cpu_seconds()
    verified = bool(report.get("ok") if mode == "streaming" else report.get("verified"))
    seconds = float(report.get("seconds") or 0)
    return {
        "mode": mode,
        "file_bytes": size,
        "window": window if mode == "streaming" else "16",
        "verified": verified,
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / seconds / 1e6, 2) if verified and seconds else None,
        "renderer_peak_mb": round(rss / 1e6, 1),
        "browser_cpu_s": round(cpu, 2),
        "error": None if verified else str(report.get("error") or report.get("sha256") or report)[:200],
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return round(statistics.median(values), 2) if values else None


async def main_async(args: argparse.Namespace) -> int:
    if chromium_path() is None:
        print("chromium is needed (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    buffered_max = parse_size(args.buffered_max)
    with tempfile.TemporaryDirectory(prefix="rxchannel-bench-") as tmp:
        root = Path(tmp)
        for size in sizes:
            with open(root / f"sparse-{size}.bin", "wb") as handle:
                handle.truncate(size)  # sparse: the hub's disk is not what is measured
        bench = Bench(root)
        server = await serve(bench.hub.router, transport="webrtc", options=TransportOptions(http_setup=bench.setup))
        rows, records = [], []
        try:
            for size in sizes:
                name = f"sparse-{size}.bin"
                modes = ["buffered", "streaming"] if size <= buffered_max else ["streaming"]
                runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
                for _ in range(args.rounds):
                    for mode in modes:  # alternate A and B within each round
                        run = await run_once(bench, server.url, mode, name, size, args.window)
                        runs[mode].append(run)
                        if args.json:
                            emit_json({"benchmark": "browser", **run})
                        if not args.quiet:
                            print(f"  {label(size)} {mode}: {run}", file=sys.stderr, flush=True)
                buffered_rate = median_of(runs.get("buffered", []), "mb_per_s")
                for mode in ["buffered", "streaming"]:
                    if mode not in runs:
                        rows.append([label(size), mode, "-", "not run (past --buffered-max)", "-", "-", "-"])
                        continue
                    rate = median_of(runs[mode], "mb_per_s")
                    ok = sum(r["verified"] for r in runs[mode])
                    ratio = f"{rate / buffered_rate:.2f}x" if mode == "streaming" and rate and buffered_rate else "-"
                    errors = sorted({r["error"] for r in runs[mode] if r["error"]})
                    rows.append(
                        [
                            label(size),
                            mode,
                            runs[mode][0]["window"],
                            f"{ok}/{len(runs[mode])}" + (f" ({errors[0].split(':')[0][:40]})" if errors else ""),
                            rate if rate is not None else "-",
                            ratio,
                            median_of(runs[mode], "renderer_peak_mb"),
                        ]
                    )
                    records.append({"size": size, "mode": mode, "mb_per_s": rate, "verified": ok, "runs": runs[mode]})
        finally:
            await server.close()
    print_table(
        f"Browser worker: fetch into the page, hub in-process over WebRTC (median of {args.rounds})",
        ["file", "page", "window", "verified", "MB/s", "vs buffered", "renderer peak MB"],
        rows,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64MiB,1GiB,3GiB", help="comma-separated file sizes (KiB, MiB, GiB)")
    parser.add_argument("--buffered-max", default="1GiB", help="largest size the old buffered page is run at")
    parser.add_argument("--window", default="32", help="the streaming page's window: N or auto")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--quick", action="store_true", help="64 MiB only")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = "64MiB"
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
