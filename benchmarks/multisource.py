"""One file from one, two and three hubs at once; and what per-chunk verification costs.

    python -m benchmarks.multisource [--size 64MiB] [--rounds 3] [--json] [--quick] [--no-links]

Three parts, in one run, rounds alternating the cases (medians, and ratios to the first):

* loopback: three ``rxchannel serve`` processes on 127.0.0.1 with the same file; a real
  worker process (``rxchannel fetch --json --window 32``) pulls it from the first hub alone
  (``--verify file``: today's single SHA-256 at the end; ``--verify chunks``), then from
  two and three (``--source``);
* emulated links (root, ``tests/netlab.py``): the same three hubs in namespaces behind
  their own links of 8, 16 and 24 Mbit (``tests/linkemu.py``, 5 ms each way); the worker
  pulls from the 24 Mbit hub alone, then the 24+16, then all three. Per case: MB/s, the
  ratio to the sum of the links used, and each source's share against its rate's share;
* verification cost: per 64 KiB chunk, SHA-256 (hashlib) against BLAKE3 (``blake3``); and
  the worker's sink, in-process from memory to disk: :class:`FileSink` (write, whole-file
  SHA-256: today's) against :class:`ChunkSink` (BLAKE3 per chunk, then the write, and the
  whole-file SHA-256 of the verified prefix). MB/s and CPU ms per MB (process time).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._procs import first_line
from benchmarks._report import add_row, emit_json, median, print_table
from rxchannel.cli.units import parse_size

MIB = 1 << 20
RATES_MBIT = (24.0, 16.0, 8.0)
RX = [sys.executable, "-m", "rxchannel"]


def _make(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        for start in range(0, size, MIB):
            handle.write(block[: min(MIB, size - start)])


def _fetch(prefix: list[str], urls: list[str], out: Path, verify: str, *extra: str) -> dict[str, Any]:
    """One ``rxchannel fetch --json`` process; adds its CPU seconds (user + system, of children)."""
    argv = [*prefix, *RX, "fetch", urls[0], "f.bin", "-o", str(out), "--json", "--force", "--verify", verify, *extra]
    for url in urls[1:]:
        argv += ["--source", url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"fetch failed ({proc.returncode}): {stderr.strip()}")
    summary: dict[str, Any] = json.loads(stdout)
    summary["cpu_s"] = _child_cpu()
    out.unlink()
    return summary


_last_cpu = [0.0]


def _child_cpu() -> float:
    """CPU seconds of children since the last call (the fetch just waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    delta, _last_cpu[0] = total - _last_cpu[0], total
    return delta


def _start_hubs(root: Path, count: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    procs, urls = [], []
    for _ in range(count):
        proc = subprocess.Popen(
            [*RX, "serve", str(root), "--port", "0", "--transport", "tcp", "--processes", "1",
             "--log-level", "warning"],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        procs.append(proc)
        urls.append(first_line(proc))
    return procs, urls


def loopback(size: int, rounds: int, as_json: bool) -> None:
    cases = [("1 hub, --verify file", 1, "file"), ("1 hub, --verify chunks", 1, "chunks"),
             ("2 hubs", 2, "chunks"), ("3 hubs", 3, "chunks")]  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "root"
        _make(root / "f.bin", size)
        procs, urls = _start_hubs(root, 3)
        try:
            for url in urls:  # each hub computes its manifest once, before the timed runs
                _fetch([], [url], Path(scratch) / "warm.bin", "chunks")
            _child_cpu()
            results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
            for r in range(rounds):
                order = cases if r % 2 == 0 else cases[::-1]
                for name, n, verify in order:
                    # one window for every case (--source alone would make it auto: see the README)
                    results[name].append(_fetch([], urls[:n], Path(scratch) / "out.bin", verify, "--window", "32"))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=15)
    rows: list[dict[str, Any]] = []
    base = median([s["mb_per_s"] for s in results[cases[0][0]]])
    for name, n, _ in cases:
        runs = results[name]
        mbps = median([s["mb_per_s"] for s in runs])
        cpu_per_mb = median([s["cpu_s"] * 1000 / (s["bytes"] / 1e6) for s in runs])
        shares = [median([s["sources"][i]["bytes"] / s["bytes"] for s in runs]) for i in range(n)] if n > 1 else [1.0]
        row = {"bench": "multisource", "case": f"loopback: {name}", "sources": n, "mb_per_s": round(mbps, 1),
               "ratio": round(mbps / base, 2), "worker_cpu_ms_per_mb": round(cpu_per_mb, 2),
               "shares": [round(x, 3) for x in shares]}  # fmt: skip
        add_row(rows, row, as_json)
    if not as_json:
        print_table(
            f"loopback, {size // MIB} MiB, {rounds} rounds (medians; ratio: to one hub with --verify file)",
            ["case", "MB/s", "ratio", "worker CPU ms/MB", "shares"],
            [[r["case"][10:], r["mb_per_s"], r["ratio"], r["worker_cpu_ms_per_mb"], r["shares"]] for r in rows],
        )


def links(size: int, rounds: int, as_json: bool) -> None:
    from tests.netlab import Lab, missing_tools, start_hub
    from tests.network.test_multisource_netns import star

    missing = [m for m in missing_tools() if m != "turnserver"]
    if missing:
        print(f"benchmarks.multisource: the emulated links need {', '.join(missing)}; skipped", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as scratch, Lab() as lab:
        root = Path(scratch) / "root"
        _make(root / "f.bin", size)
        net = star(lab, RATES_MBIT)
        urls = [
            start_hub(hub, root, "--host", ip, "--port", "8765", "--processes", "1")[1][0]
            for hub, ip in zip(net.hubs, net.hub_ips, strict=True)
        ]
        prefix = ["ip", "netns", "exec", net.worker.ns]
        for url in urls:
            _fetch(prefix, [url], Path(scratch) / "warm.bin", "chunks")
        _child_cpu()
        results: dict[int, list[dict[str, Any]]] = {1: [], 2: [], 3: []}
        for r in range(rounds):
            for n in (1, 2, 3) if r % 2 == 0 else (3, 2, 1):
                results[n].append(_fetch(prefix, urls[:n], Path(scratch) / "out.bin", "chunks"))
    rows: list[dict[str, Any]] = []
    for n in (1, 2, 3):
        runs = results[n]
        rates = RATES_MBIT[:n]
        mbps = median([s["mb_per_s"] for s in runs])
        link = sum(rates) / 8
        shares = [median([s["sources"][i]["bytes"] / s["bytes"] for s in runs]) for i in range(n)]
        expected = [rate / sum(rates) for rate in rates]
        worst = max(abs(got - want) / want for got, want in zip(shares, expected, strict=True))
        row = {"bench": "multisource", "case": f"links: {' + '.join(f'{r:g}' for r in rates)} Mbit", "sources": n,
               "mb_per_s": round(mbps, 2), "of_links": round(mbps / link, 3), "shares": [round(x, 3) for x in shares],
               "rate_shares": [round(x, 3) for x in expected], "worst_share_error": round(worst, 3)}  # fmt: skip
        add_row(rows, row, as_json)
    if not as_json:
        print_table(
            f"emulated links (5 ms each way), {size // MIB} MiB, {rounds} rounds (medians)",
            ["links", "MB/s", "of the links' sum", "shares", "rates' shares", "worst share error"],
            [[r["case"][7:], r["mb_per_s"], r["of_links"], r["shares"], r["rate_shares"], r["worst_share_error"]]
             for r in rows],
        )  # fmt: skip


def verification(size: int, rounds: int, as_json: bool) -> None:
    import blake3

    from rxchannel.files import ChunkSink, FileSink, compute_manifest
    from rxchannel.runtime import Payload

    chunk = 64 * 1024
    data = os.urandom(size)
    rows: list[dict[str, Any]] = []

    def measure(name: str, work: Any) -> None:
        speeds, cpus = [], []
        for _ in range(rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            speeds.append(size / wall / 1e6)
            cpus.append(cpu * 1000 / (size / 1e6))
        rows.append({"bench": "multisource", "case": name, "mb_per_s": round(median(speeds), 1),
                     "cpu_ms_per_mb": round(median(cpus), 3)})  # fmt: skip

    view = memoryview(data)
    measure(
        "hash: SHA-256 per 64 KiB",
        lambda: [hashlib.sha256(view[i : i + chunk]).digest() for i in range(0, size, chunk)],
    )
    measure(
        "hash: BLAKE3 per 64 KiB", lambda: [blake3.blake3(view[i : i + chunk]).digest() for i in range(0, size, chunk)]
    )

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "src.bin"
        source.write_bytes(data)
        manifest, _ = compute_manifest(source, base=chunk)
        pieces = [data[i : i + chunk] for i in range(0, size, chunk)]

        async def file_sink() -> None:
            sink = FileSink(Path(scratch) / "a.bin", resume=False, require_digest=False)
            await sink.open()
            for piece in pieces:
                await sink.write(Payload(piece))
            await sink.finish()

        async def chunk_sink() -> None:
            sink = ChunkSink(Path(scratch) / "b.bin", manifest, resume=False, overwrite=True)
            await sink.open()
            for index, piece in enumerate(pieces):
                await sink.write_chunk(index, piece)
            await sink.finish()

        measure("sink: FileSink (whole-file SHA-256, today)", lambda: asyncio.run(file_sink()))
        measure("sink: ChunkSink (BLAKE3 per chunk + SHA-256)", lambda: asyncio.run(chunk_sink()))
    if as_json:
        for row in rows:
            emit_json(row)
    else:
        print_table(
            f"verification cost, {size // MIB} MiB in 64 KiB chunks, {rounds} rounds (medians; CPU of this process)",
            ["case", "MB/s", "CPU ms/MB"],
            [[r["case"], r["mb_per_s"], r["cpu_ms_per_mb"]] for r in rows],
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=64 * MIB)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="16 MiB, one round")
    parser.add_argument("--no-links", action="store_true", help="skip the emulated links (root needed)")
    args = parser.parse_args(argv)
    size, rounds = (16 * MIB, 1) if args.quick else (args.size, args.rounds)
    verification(size, rounds, args.json)
    loopback(size, rounds, args.json)
    if not args.no_links:
        # at 6 MB/s for the three links together, a quarter of the size keeps a round under ~30 s
        links(max(4 * MIB, size // 4), rounds, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
