"""Every path at its best: ``rxchannel fetch`` per path and WebRTC stack, side by side.

    python -m benchmarks.paths [--rounds 3] [--size 64MiB] [--sites loopback,host,lan] [--json]

One hub (``rxchannel serve --processes 1``) and one worker (``rxchannel fetch --json``) per
row, real processes, the same file; rounds alternate the rows and the table reports
medians and the ratio to WebRTC on aiortc at the same site:

* ``direct``: ``--via auto``, which takes the hub's WebSocket (``/rsocket`` on its HTTP port);
* ``webrtc aiortc``: ``--via webrtc``, hub and worker on aiortc;
* ``webrtc native``: ``--via webrtc``, hub and worker on the native stack (libwebrtc);
* ``raw native``: the native stack's own DataChannel rate, no RSocket: a sender that keeps
  ``bufferedAmount`` between the same 256 KiB / 1 MiB marks, 64 KiB messages (the figure
  rxchannel on native is compared with).

Sites: ``loopback`` (127.0.0.1: direct and aiortc only, libwebrtc never gathers on
loopback), ``host`` (this machine's own non-loopback address: every row), ``lan`` (two
network namespaces joined by a veth pair; needs root, iproute2 and iptables).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._report import emit_json, median, print_table
from rxchannel.cli.units import parse_size
from rxchannel.transports.addresses import interface_addresses
from tests.support import make_file

from ._procs import first_line

RX = [sys.executable, "-m", "rxchannel"]
PEERS = [sys.executable, "-m", "benchmarks._dc_peers"]
CHUNK = 64 * 1024

#: row -> (hub flags, worker flags); None: the raw pair instead of rxchannel
ROWS: dict[str, tuple[list[str], list[str]] | None] = {
    "direct": (["--webrtc-stack", "aiortc"], ["--via", "auto"]),
    "webrtc aiortc": (["--webrtc-stack", "aiortc"], ["--via", "webrtc", "--webrtc-stack", "aiortc"]),
    "webrtc native": (["--webrtc-stack", "native"], ["--via", "webrtc", "--webrtc-stack", "native"]),
    "raw native": None,
}
LOOPBACK_ROWS = ("direct", "webrtc aiortc")


class Site:
    """Where the hub and the worker run: a command prefix for each, and the hub's address."""

    def __init__(self, name: str, hub_ip: str, hub_prefix: list[str], worker_prefix: list[str]):
        self.name, self.hub_ip = name, hub_ip
        self.hub_prefix, self.worker_prefix = hub_prefix, worker_prefix
        self.close: Callable[[], None] = lambda: None

    def rows(self) -> list[str]:
        return list(LOOPBACK_ROWS) if self.name == "loopback" else list(ROWS)


def _lan() -> Site:
    from tests.netlab import Lab, lan

    made = Lab()
    net = lan(made)
    site = Site("veth LAN", net.hub_ip, ["ip", "netns", "exec", net.hub.ns], ["ip", "netns", "exec", net.worker.ns])
    site.close = made.close
    return site


def run_rx(site: Site, root: Path, row: str, out: Path) -> dict[str, Any]:
    flags = ROWS[row]
    assert flags is not None
    hub = subprocess.Popen(
        [*site.hub_prefix, *RX, "serve", str(root), "--host", site.hub_ip, "--port", "0", "--processes", "1",
         "--log-level", "warning", *flags[0]],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url = first_line(hub)
        done = subprocess.run(
            [*site.worker_prefix, *RX, "fetch", url, "f.bin", "-o", str(out), "--json", "--force", "--no-resume",
             *flags[1]],
            capture_output=True,
            text=True,
            timeout=900,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{row} at {site.name}: fetch failed: {done.stderr.strip()}")
        return dict(json.loads(done.stdout))
    finally:
        hub.terminate()
        hub.wait(timeout=15)


def run_raw(site: Site, root: Path, size: int) -> dict[str, Any]:
    sender = subprocess.Popen(
        [*site.hub_prefix, *PEERS, "stack-send", str(root / "f.bin"), str(CHUNK), "--stack", "native",
         "--host", site.hub_ip],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url = first_line(sender)
        worker_ip = site.hub_ip if site.name != "veth LAN" else "10.1.0.2"
        done = subprocess.run(
            [*site.worker_prefix, *PEERS, "stack-recv", url, str(size), "--stack", "native", "--host", worker_ip],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise RuntimeError(f"raw native at {site.name} failed: {done.stderr.strip()}")
        result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
        result["mb_per_s"] = result["bytes"] / result["seconds"] / 1e6
        return result
    finally:
        sender.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.paths", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="64MiB")
    parser.add_argument("--sites", default="loopback,host,lan", help="comma-separated: loopback, host, lan")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 round, 16 MiB, loopback and host only")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.size, args.sites = 1, "16MiB", "loopback,host"
    size = parse_size(args.size)
    sites: list[Site] = []
    for name in args.sites.split(","):
        if name == "loopback":
            sites.append(Site("loopback", "127.0.0.1", [], []))
        elif name == "host":
            sites.append(Site("host address", interface_addresses()[0], [], []))
        elif name == "lan":
            sites.append(_lan())
        else:
            parser.error(f"unknown site {name!r}")
    results: dict[tuple[str, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="rxbench-paths-") as tmp:
            root = Path(tmp) / "root"
            make_file(root / "f.bin", size, seed=7)
            out = Path(tmp) / "out.bin"
            for _ in range(args.rounds):
                for site in sites:
                    for row in site.rows():
                        result = run_raw(site, root, size) if ROWS[row] is None else run_rx(site, root, row, out)
                        results.setdefault((site.name, row), []).append(float(result["mb_per_s"]))
    finally:
        for site in sites:
            site.close()
    table = []
    for site in sites:
        base = median(results[(site.name, "webrtc aiortc")])
        raw = median(results.get((site.name, "raw native"), []))
        for row in site.rows():
            mbs = median(results[(site.name, row)])
            versus_raw = f"{mbs / raw:.2f}x" if row == "webrtc native" and raw == raw else ""
            table.append([site.name, row, mbs, f"{mbs / base:.2f}x", versus_raw])
            if args.json:
                emit_json(
                    {"bench": "paths", "site": site.name, "row": row, "bytes": size, "rounds": args.rounds,
                     "mb_per_s": round(mbs, 2), "vs_webrtc_aiortc": round(mbs / base, 2)}
                )  # fmt: skip
    print_table(
        f"fetch of {size >> 20} MiB per path and stack (median of {args.rounds} alternating rounds)",
        ["site", "path", "MB/s", "vs webrtc aiortc", "vs raw native"],
        table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
