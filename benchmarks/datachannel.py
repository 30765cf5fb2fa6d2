"""WebRTC DataChannel file transfer: rxchannel (hub + fetch) vs raw aiortc, same run.

Throughput (``--mode throughput``): the same file and chunk size, rounds alternating
rxchannel and raw aiortc, each side in its own process, loopback ICE.

Memory (``--mode memory``): peak RSS of sender and receiver for files of several sizes
while the receiver's sink is throttled (default 2 MB/s). rxchannel's credits slow the
hub's disk reads down to the sink's pace; the raw pattern has no way to, so its receiver
buffers what the sink has not written yet.

    python -m benchmarks.datachannel [--mode throughput|memory|both] [--loop uvloop|asyncio|both] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._loops import add_loop_option, loops_from
from ._procs import first_line, json_line
from ._report import add_row, cells, median, print_table

PEERS = [sys.executable, "-m", "benchmarks._dc_peers"]


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        block = hashlib.shake_256(b"rxchannel").digest(1 << 20)
        left = size
        while left:
            part = block[: min(left, len(block))]
            handle.write(part)
            digest.update(part)
            left -= len(part)
    return digest.hexdigest()


def run_rxchannel(
    directory: Path, name: str, chunk: int, rate: float | None, window: int, loop: str = "uvloop"
) -> dict[str, Any]:
    hub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rxchannel",
            "serve",
            str(directory),
            "--port",
            "0",
            "--chunk-size",
            str(chunk),
            "--loop",
            loop,
            "--log-level",
            "warning",
            "--processes",
            "1",
            "--webrtc-stack",
            "aiortc",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = first_line(hub)
        hub_cpu = _cpu_seconds(hub.pid)  # set up and listening: what follows is the transfer's
        cmd = [*PEERS, "rx-recv", url, name, str(directory / f"{name}.rx-out"), "--window", str(window)]
        cmd += ["--loop", loop, "--stack", "aiortc"]
        worker = subprocess.Popen([*cmd, *(["--rate", str(rate)] if rate else [])], stdout=subprocess.PIPE, text=True)
        result = json_line(worker)
        worker.wait(timeout=30)
        with open(f"/proc/{hub.pid}/status") as status:
            hub_rss = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
        result["sender_rss_mb"] = hub_rss
        result["sender_cpu_s"] = _cpu_seconds(hub.pid) - hub_cpu
        return result
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=15)
        (directory / f"{name}.rx-out").unlink(missing_ok=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_raw(directory: Path, name: str, chunk: int, rate: float | None, loop: str = "uvloop") -> dict[str, Any]:
    sender = subprocess.Popen(
        [*PEERS, "raw-send", str(directory / name), str(chunk), "--loop", loop], stdout=subprocess.PIPE, text=True
    )
    try:
        url = first_line(sender)
        out = directory / f"{name}.raw-out"
        receiver = subprocess.Popen(
            [*PEERS, "raw-recv", url, str(out), "--loop", loop, *(["--rate", str(rate)] if rate else [])],
            stdout=subprocess.PIPE,
            text=True,
        )
        result = json_line(receiver)
        receiver.wait(timeout=30)
        sent = json_line(sender)
        result["sender_rss_mb"], result["sender_cpu_s"] = sent["peak_rss_mb"], sent["cpu_s"]
        out.unlink(missing_ok=True)
        return result
    finally:
        sender.wait(timeout=30)


def throughput(rounds: int, size: int, chunks: list[int], window: int, as_json: bool, loops: list[str]) -> None:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rxbench-") as tmp:
        directory = Path(tmp)
        digest = make_file(directory / "payload.bin", size)
        for loop in loops:
            for chunk in chunks:
                samples: dict[str, list[float]] = {"rxchannel": [], "raw": []}
                cpu: dict[str, list[tuple[float, float]]] = {"rxchannel": [], "raw": []}  # ms per MB
                for _ in range(rounds):
                    for impl in ("rxchannel", "raw"):
                        if impl == "rxchannel":
                            r = run_rxchannel(directory, "payload.bin", chunk, None, window, loop)
                        else:
                            r = run_raw(directory, "payload.bin", chunk, None, loop)
                        if r["bytes"] != size or r["sha256"] != digest:
                            raise RuntimeError(f"{impl} delivered {r['bytes']} bytes with a wrong digest")
                        samples[impl].append(size / r["seconds"] / 1e6)
                        mb = size / 1e6
                        cpu[impl].append((1000 * r["sender_cpu_s"] / mb, 1000 * r["cpu_s"] / mb))
                ratios = [a / b for a, b in zip(samples["rxchannel"], samples["raw"], strict=True)]
                row = {
                    "bench": "datachannel_throughput",
                    "loop": loop,
                    "size": size,
                    "chunk": chunk,
                    "window": window,
                    "rxchannel_mb_s": median(samples["rxchannel"]),
                    "raw_aiortc_mb_s": median(samples["raw"]),
                    "ratio": median(ratios),  # each round's pair ran back to back
                    "rxchannel_sender_ms_per_mb": median([c[0] for c in cpu["rxchannel"]]),
                    "rxchannel_receiver_ms_per_mb": median([c[1] for c in cpu["rxchannel"]]),
                    "raw_sender_ms_per_mb": median([c[0] for c in cpu["raw"]]),
                    "raw_receiver_ms_per_mb": median([c[1] for c in cpu["raw"]]),
                }
                add_row(rows, row, as_json)
    if not as_json:
        print_table(
            f"DataChannel file transfer, {size >> 20} MiB, loopback, median of {rounds} alternating rounds "
            "(ratio: median of the rounds' ratios)",
            ["loop", "chunk", "rxchannel MB/s", "raw aiortc MB/s", "ratio", "CPU ms/MB rx send/recv", "raw send/recv"],
            [
                [
                    r["loop"],
                    r["chunk"],
                    r["rxchannel_mb_s"],
                    r["raw_aiortc_mb_s"],
                    f"{r['ratio']:.2f}x",
                    f"{r['rxchannel_sender_ms_per_mb']:.1f} / {r['rxchannel_receiver_ms_per_mb']:.1f}",
                    f"{r['raw_sender_ms_per_mb']:.1f} / {r['raw_receiver_ms_per_mb']:.1f}",
                ]
                for r in rows
            ],
        )


def memory(sizes: list[int], rate: float, chunk: int, window: int, as_json: bool) -> None:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rxbench-") as tmp:
        directory = Path(tmp)
        for size in sizes:
            name = f"m{size}.bin"
            make_file(directory / name, size)
            for impl in ("rxchannel", "raw"):
                if impl == "rxchannel":
                    r = run_rxchannel(directory, name, chunk, rate, window)
                else:
                    r = run_raw(directory, name, chunk, rate)
                row = {
                    "bench": "datachannel_memory",
                    "impl": impl,
                    "size_mib": size >> 20,
                    "sink_mb_s": rate / 1e6,
                    "seconds": r["seconds"],
                    "sender_rss_mb": r["sender_rss_mb"],
                    "receiver_rss_mb": r["peak_rss_mb"],
                }
                add_row(rows, row, as_json)
            (directory / name).unlink()
    if not as_json:
        print_table(
            f"Peak RSS with the receiver's sink throttled to {rate / 1e6:g} MB/s (chunk {chunk}, window {window})",
            ["impl", "file MiB", "seconds", "sender RSS MB", "receiver RSS MB"],
            cells(rows, "impl size_mib seconds sender_rss_mb receiver_rss_mb"),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["throughput", "memory", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="32MiB", help="file size for throughput")
    parser.add_argument("--sizes", default="64MiB,512MiB", help="file sizes for memory")
    parser.add_argument("--rate", type=float, default=2e6, help="sink bytes/s for memory")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="8 MiB throughput, 16/64 MiB at 8 MB/s for memory")
    parser.add_argument("--chunks", default="16384,65536", help="chunk sizes for throughput")
    parser.add_argument("--json", action="store_true")
    add_loop_option(parser)
    args = parser.parse_args(argv)
    from rxchannel.cli.units import parse_size

    if args.quick:
        args.size, args.sizes, args.rate, args.rounds = "8MiB", "16MiB,64MiB", 8e6, 1
    if args.mode in ("throughput", "both"):
        chunks = [parse_size(c) for c in args.chunks.split(",")]
        throughput(args.rounds, parse_size(args.size), chunks, args.window, args.json, loops_from(args))
    if args.mode in ("memory", "both"):
        sizes = [parse_size(s) for s in args.sizes.split(",")]
        memory(sizes, args.rate, 65536, args.window, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
