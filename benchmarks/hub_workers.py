"""One hub, N worker processes fetching from it at once over WebRTC: aggregate MB/s and hub CPU per MB.

Each round starts a hub (``rxchannel serve``), then for each N (alternating 1, 2, 4, 8 ...)
N worker processes that each open their own peer connection, wait until all are connected,
and fetch the same file (``fetch_file``, verified) at the same moment. Aggregate MB/s is
all bytes over the time from the first start to the last end; hub CPU per MB is the hub's
CPU seconds over those bytes.

On a machine with few cores the workers compete with the hub for them, which is not what a
hub with workers on other machines sees: ``--pin`` (the default where there are 2 cores or
more) puts the hub on the first core and the workers on the others.

``--processes 1,2`` compares ``serve --processes N`` side by side in the same rounds (a hub
on every core: pinning is then off, the hub's processes and the workers share the cores);
hub CPU is then the sum over the hub's processes.

    python -m benchmarks.hub_workers [--workers 1,2,4,8] [--processes 1] [--rounds 3] [--size 16MiB] [--loop L]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._loops import add_loop_option, loops_from
from ._procs import first_line, json_line
from ._report import add_row, add_run_options, median, print_table
from .datachannel import _cpu_seconds, make_file

PEERS = [sys.executable, "-m", "benchmarks._dc_peers"]


def _pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children, live ones (a hub of several processes)."""
    total = _cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += _tree_cpu_seconds(int(child))
    return total


def one_run(
    root: Path, name: str, size: int, workers: int, loop: str, pin: bool, window: int, processes: int = 1
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    hub_cpus = "0" if pin else None
    worker_cpus = f"1-{cores - 1}" if pin else None
    cmd = [sys.executable, "-m", "rxchannel", "serve", str(root), "--port", "0", "--loop", loop]
    cmd += ["--processes", str(processes)]
    hub = subprocess.Popen(_pinned(cmd, hub_cpus), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        url = first_line(hub)
        out = root.parent / "out"
        out.mkdir(exist_ok=True)
        for i in range(workers):
            worker = [*PEERS, "rx-go", url, name, str(out / f"{i}.bin"), "--loop", loop, "--window", str(window)]
            procs.append(
                subprocess.Popen(_pinned(worker, worker_cpus), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a worker did not connect (said {line!r}, exit {proc.poll()})")
        time.sleep(0.5)  # let the connections settle (ICE consent, first keepalives)
        cpu_before = _tree_cpu_seconds(hub.pid)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json_line(proc) for proc in procs]
        hub_cpu = _tree_cpu_seconds(hub.pid) - cpu_before
        for proc in procs:
            proc.wait(timeout=30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=15)
        except subprocess.TimeoutExpired:
            hub.kill()
    if any(r["bytes"] != size for r in results):
        raise RuntimeError("a worker fetched the wrong number of bytes")
    total = size * workers
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "mb_s": total / seconds / 1e6,
        "hub_ms_per_mb": 1000 * hub_cpu / (total / 1e6),
        "worker_ms_per_mb": 1000 * sum(r["cpu_s"] for r in results) / (total / 1e6),
        "slowest_worker_mb_s": min(size / (r["end"] - r["start"]) / 1e6 for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="16MiB", help="the file each worker fetches")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--processes", default="1", help="serve --processes values to compare, e.g. 1,2")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2)
    add_run_options(parser, "1 round, 8 MiB, 1 and 4 workers")
    add_loop_option(parser)
    args = parser.parse_args(argv)
    from rxchannel.cli.units import parse_size

    if args.quick:
        args.rounds, args.size, args.workers = 1, "8MiB", "1,4"
    size = parse_size(args.size)
    counts = [int(n) for n in args.workers.split(",")]
    hubs = [int(n) for n in args.processes.split(",")]
    pin = args.pin and hubs == [1]  # a hub of several processes has every core
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rxhub-") as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        make_file(root / "shared.bin", size)
        for loop in loops_from(args):
            samples: dict[tuple[int, int], list[dict[str, Any]]] = {}
            for _ in range(args.rounds):
                for n in counts:  # alternate the worker counts and the hub's processes in every round
                    for p in hubs:
                        r = one_run(root, "shared.bin", size, n, loop, pin, args.window, p)
                        samples.setdefault((p, n), []).append(r)
            for (p, n), runs in samples.items():
                row = {
                    "bench": "hub_workers",
                    "loop": loop,
                    "processes": p,
                    "workers": n,
                    "size": size,
                    "pinned": pin,
                    **{key: median([r[key] for r in runs]) for key in runs[0]},
                }
                one_process = samples.get((1, n))
                if p != 1 and one_process:
                    row["vs_one_process"] = row["mb_s"] / median([r["mb_s"] for r in one_process])
                single = samples.get((p, 1))
                if single:
                    row["vs_one_worker"] = row["mb_s"] / median([r["mb_s"] for r in single])
                    row["hub_cpu_vs_one"] = row["hub_ms_per_mb"] / median([r["hub_ms_per_mb"] for r in single])
                add_row(rows, row, args.json)
    if not args.json:
        print_table(
            f"One hub, N workers over WebRTC, {size >> 20} MiB each, median of {args.rounds} rounds"
            f"{' (hub on core 0, workers on the others)' if pin else ''}",
            [
                "loop",
                "hub processes",
                "workers",
                "aggregate MB/s",
                "x one worker",
                "x one process",
                "hub ms/MB",
                "x one",
                "worker ms/MB",
            ],
            [
                [
                    r["loop"],
                    r["processes"],
                    r["workers"],
                    r["mb_s"],
                    f"{r.get('vs_one_worker', float('nan')):.2f}x",
                    f"{r.get('vs_one_process', float('nan')):.2f}x",
                    r["hub_ms_per_mb"],
                    f"{r.get('hub_cpu_vs_one', float('nan')):.2f}x",
                    r["worker_ms_per_mb"],
                ]
                for r in rows
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
