"""Issue 30 across emulated links: one worker, three hubs with the same file, each hub behind
its own link of a different rate (``tests/linkemu.py`` between network namespaces); the
worker fetches from all three at once (``fetch URL PATH --source URL2 --source URL3``)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rxchannel.files import sha256_file
from tests.netlab import RX, Host, Lab, start_hub
from tests.support import make_file

RATES_MBIT = (8.0, 16.0, 24.0)  # 1, 2 and 3 MB/s: shares of 1/6, 2/6 and 3/6
SIZE = 16 * 1024 * 1024


@dataclass
class Star:
    worker: Host
    hubs: list[Host]
    hub_ips: list[str]


def star(lab: Lab, rates_mbit: tuple[float, ...], delay_ms: float = 5.0) -> Star:
    """A worker joined to each hub ``i`` (10.<i+1>.0.1) through its own emulated link of ``rates_mbit[i]``."""
    worker = lab.host("worker")
    hubs, ips = [], []
    for i, rate in enumerate(rates_mbit):
        hub, middle = lab.host(f"hub{i}"), lab.host(f"link{i}")
        hub_ip, worker_ip = f"10.{i + 1}.0.1", f"10.{i + 1}.0.2"
        hub_if, side_a = lab.link(hub, f"{hub_ip}/24", middle, "")
        worker_if, side_b = lab.link(worker, f"{worker_ip}/24", middle, "")
        for iface in (side_a, side_b):
            middle.ip("link", "set", iface, "promisc", "on")
        # a userspace bridge copies frames as they are: checksums and segments must be made in software
        hub.exec("ethtool", "-K", hub_if, "tx", "off", "tso", "off", "gso", "off")
        worker.exec("ethtool", "-K", worker_if, "tx", "off", "tso", "off", "gso", "off")
        emulator = middle.popen(
            [sys.executable, "-m", "tests.linkemu", side_a, side_b, "--rate-mbit", str(rate),
             "--delay-ms", str(delay_ms), "--queue-ms", "100"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert emulator.stdout is not None
        if emulator.stdout.readline().strip() != "ready":
            raise RuntimeError("the link emulator did not start")
        hubs.append(hub)
        ips.append(hub_ip)
    return Star(worker, hubs, ips)


def test_three_hubs_behind_links_of_different_rates_share_the_file_by_rate(lab: Lab, tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", SIZE, seed=30)
    net = star(lab, RATES_MBIT)
    urls = [
        start_hub(hub, root, "--host", ip, "--port", "8765", "--processes", "1")[1][0]
        for hub, ip in zip(net.hubs, net.hub_ips, strict=True)
    ]
    out = tmp_path / "out.bin"
    done = net.worker.run(
        [*RX, "fetch", urls[0], "f.bin", "-o", str(out), "--json",
         "--source", urls[1], "--source", urls[2]],
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["sha256"] == sha256_file(root / "f.bin") == sha256_file(out)
    sources = summary["sources"]
    assert [s["url"] for s in sources] == urls and all(s["dropped"] is None for s in sources), sources
    assert sum(s["bytes"] for s in sources) == SIZE
    # each source's share within ±20 % of its rate's share
    shares = [s["bytes"] / SIZE for s in sources]
    expected = [rate / sum(RATES_MBIT) for rate in RATES_MBIT]
    for got, want in zip(shares, expected, strict=True):
        assert abs(got - want) <= 0.2 * want, (shares, expected)
    # the three links together: measured 0.87-0.88x the sum of their rates (Ethernet, IP and TCP
    # headers take ~4 %); asserted at 0.8x, which one source or equal shares (0.5x) cannot reach,
    # on a 2-core machine shared with other work (the 0.85x figure is the benchmark's, benchmarks/multisource.py)
    link_bytes_per_s = sum(RATES_MBIT) * 1e6 / 8
    assert summary["bytes"] / summary["seconds"] >= 0.8 * link_bytes_per_s, summary
