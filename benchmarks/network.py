"""Fetch throughput across machines (network namespaces), and how fast a hopeless dial fails.

    python -m benchmarks.network [--rounds 3] [--size 16MiB] [--json] [--quick]

Needs root, iproute2, iptables, ethtool and coturn (``make netlab`` installs them). One
hub (``rxchannel serve``) and one worker (``rxchannel fetch --json``) per scenario, real
processes in namespaces built by ``tests/netlab.py``; rounds alternate the scenarios and
the table reports medians:

* loopback: hub and worker in one namespace, on 127.0.0.1;
* veth LAN: two namespaces joined by a veth pair, the worker dials the hub by IP;
* worker behind NAT: MASQUERADE on the worker's router, the hub on a public address;
* symmetric NAT + coturn: both behind ``MASQUERADE --random-fully``, relayed by coturn
  (``use-auth-secret``), the worker given only the hub's URL;
* lossy link: the userspace link emulator (``tests/linkemu.py``) at 20 ms each way and
  1 % loss (a smaller file: SCTP's congestion control sets the pace there).

It also times a dial that cannot succeed (both behind symmetric NAT, no TURN): from
starting ``rxchannel fetch`` to its exit 4.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._report import emit_json, print_table
from rxchannel.cli.units import parse_size
from tests.netlab import RX, Lab, Net, emulated, internet, lan, missing_tools, start_hub
from tests.support import make_file

TURN_SECRET = "bench-turn-secret"


def _loopback(made: Lab) -> Net:
    host = made.host("box")
    return Net(made, host, host, "127.0.0.1", public_hub_ip="127.0.0.1")


SCENARIOS: dict[str, tuple[Callable[[Lab], Net], list[str], bool]] = {
    # name: (topology, extra hub flags, uses the small file)
    "loopback": (_loopback, [], False),
    "veth LAN": (lan, [], False),
    "worker behind NAT": (lambda m: internet(m, worker_nat="cone", hub_nat=None), [], False),
    "symmetric NAT + coturn": (
        lambda m: internet(m, worker_nat="symmetric", hub_nat="symmetric", turn_secret=TURN_SECRET),
        ["--turn-url", "turn:100.64.3.2:3478", "--turn-secret", TURN_SECRET],
        False,
    ),
    "lossy link 20 ms, 1 %": (
        lambda m: emulated(m, "--delay-ms", "20", "--loss", "0.01", "--seed", "1"),
        [],
        True,
    ),
}


def _fetch(net: Net, url: str, name: str, out: Path) -> dict[str, float]:
    out.unlink(missing_ok=True)
    done = net.worker.run(
        [*RX, "fetch", url, name, "-o", str(out), "--json", "--no-resume", "--via", "webrtc"], timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"fetch failed ({done.returncode}): {done.stderr.strip()}")
    summary: dict[str, float] = json.loads(done.stdout)
    return summary


def _time_to_fail(work: Path) -> tuple[float, str]:
    with Lab() as made:
        net = internet(made, worker_nat="symmetric", hub_nat="symmetric")
        start_hub(net.hub, work, "--host", net.hub_ip, "--port", "8765")
        start = time.perf_counter()
        done = net.worker.run(
            [*RX, "fetch", "http://100.64.2.2:8765", "small.bin", "-o", str(work / "x"), "--via", "webrtc"], timeout=120
        )
        seconds = time.perf_counter() - start
    if done.returncode != 4:
        raise RuntimeError(f"expected exit 4, got {done.returncode}: {done.stderr}")
    return seconds, done.stderr.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.network", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="16MiB")
    parser.add_argument("--small", default="2MiB", help="file size on the lossy link")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 round, 4 MiB")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"benchmarks.network needs {', '.join(missing)} (run 'make netlab' as root)", file=sys.stderr)
        return 1
    rounds, size = (1, parse_size("4MiB")) if args.quick else (args.rounds, parse_size(args.size))
    small = min(size, parse_size(args.small))
    with tempfile.TemporaryDirectory(prefix="rxbench-net-") as tmp:
        work = Path(tmp)
        make_file(work / "big.bin", size, seed=1)
        make_file(work / "small.bin", small, seed=2)
        labs: list[Lab] = []
        setups: dict[str, tuple[Net, str, str]] = {}
        try:
            for name, (build, extra, use_small) in SCENARIOS.items():
                made = Lab()
                labs.append(made)
                net = build(made)
                start_hub(net.hub, work, "--host", net.hub_ip, "--port", "8765", *extra)
                setups[name] = (net, f"http://{net.public_hub_ip}:8765", "small.bin" if use_small else "big.bin")
            results: dict[str, list[float]] = {name: [] for name in SCENARIOS}
            for _ in range(rounds):
                for name, (net, url, file) in setups.items():
                    results[name].append(_fetch(net, url, file, work / f"out-{file}")["mb_per_s"])
        finally:
            for made in labs:
                made.close()
        fail_seconds, fail_message = _time_to_fail(work)

    rows = []
    for name, values in results.items():
        file_size = small if SCENARIOS[name][2] else size
        median = statistics.median(values)
        rows.append([name, f"{file_size / 2**20:g} MiB", median, min(values), max(values)])
        if args.json:
            emit_json({"bench": "network", "scenario": name, "bytes": file_size, "rounds": rounds, "mb_per_s": median})
    print_table(
        f"Fetch over WebRTC across namespaces (median of {rounds} alternating rounds)",
        ["scenario", "file", "MB/s", "min", "max"],
        rows,
    )
    print(f"\nICE failure (both behind symmetric NAT, no TURN): exit 4 after {fail_seconds:.2f} s")
    print(f"  {fail_message}")
    if args.json:
        emit_json({"bench": "network", "scenario": "ice failure", "seconds_to_exit_4": round(fail_seconds, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
