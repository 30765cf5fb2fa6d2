"""The hostile-peer attacks of issue 11, for minutes instead of seconds (``make soak``).

Three processes per round: a hub (``rxchannel serve``), an attacker that runs every attack
in a loop from other loopback addresses, and this one, which fetches a file as a
legitimate worker over and over (each verified) and samples the hub's resident memory and
open file descriptors once a second. Rounds: a TCP hub (writes that skip the high-water
mark, connection and file exhaustion, reassembly, pushes, listings) and a WebRTC hub with
a secret (unsigned and oversized offers, slow HTTP clients).

    python -m tests.hostile.soak [--seconds 120] [--json]
    python -m tests.hostile.soak --addresses 200 [--seconds 120] [--json]

With ``--addresses N`` (issue 26, the many-address mode) the attackers are the floods of
:mod:`tests.hostile.flood`, each from N source addresses of its own across 127.0.0.0/8,
against a hub whose caps they fill (TCP hub: silent connections and SETUPs that never
request; WebRTC hub with a secret: slow-loris headers, WebSocket upgrades that never send
SETUP, unsigned and signed-but-abandoned offers), and every legitimate fetch comes from a
fresh source address (127.200.x.y: its signaling and its TCP or WebSocket connection;
WebRTC's own candidates stay on 127.0.0.1, the hub's loopback).

Exits 1 if a legitimate fetch failed or a bound was crossed: hub RSS growth over its
level after the first fetch > ``--max-rss-growth`` MB, RSS still growing in the second
half of the round (its peak there more than ``--max-late-growth`` MB over the first
half's: a leak, as opposed to budgets in use), or open fds > the connection cap plus a
margin.

The growth bound is what the attacks may hold at once within the hub's budgets, not one
attack's 64 MB (each case of ``tests/hostile/`` checks that alone): up to 4 whole-file
buffers of the 4 MiB file (the hub's ``max_buffers``), 40 unfinished 512 KiB fragments
on the reassembly connection, 1 MiB read and 1 MiB queued on each attacking connection,
plus the copies that encoding and the allocator keep. Measured: 80-100 MB at the peak,
flat after the first minute (120 s: 120 MB peak in the first half, 135 in the second;
150 s: 144 then 135); the late-growth bound leaves room for that jitter (which attacks
happen to overlap), not for a leak that grows with time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SELF = [sys.executable, "-m", "tests.hostile.soak"]
RX = [sys.executable, "-m", "rxchannel"]
SECRET = "soak-secret"
CONNECTIONS = 128


# ------------------------------------------------------------------ the attacker process


async def _attack_tcp(url: str, seconds: float) -> dict[str, int]:
    from rxchannel.core import Interaction, PayloadFrame, encode_frame
    from tests.hostile.flood import ECHO_PING, SETUP, framed, requests, unfinished_requests

    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    attacks = {
        "keepalive-flood": framed(SETUP, *[ECHO_PING] * 64),
        "unread-replies": framed(*requests("buffers/big.bin", Interaction.RESPONSE, 64)),
        "unread-streams": framed(*requests("files/big.bin", Interaction.STREAM, 200, initial_n=1 << 20)),
        "reassembly": framed(SETUP, *unfinished_requests(1, 40, 512 << 10)),
        "listings": framed(*requests("files", Interaction.RESPONSE, 200)),
        "push-flood": framed(
            *requests("push/soak.bin", Interaction.CHANNEL, 1, data=b"x" * 60_000, initial_n=1),
            *[encode_frame(PayloadFrame(stream_id=1, data=b"x" * 60_000)) for _ in range(200)],
        ),
    }
    counts = {name: 0 for name in attacks} | {"idle-connections": 0}
    deadline = time.monotonic() + seconds
    address = [2]

    def source() -> str:  # one attacking machine with a few addresses, not a botnet
        address[0] = address[0] % 3 + 2
        return f"127.0.0.{address[0]}"

    async def one(name: str, data: bytes) -> None:
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection(host, int(port), local_addr=(source(), 0))
                writer.write(data)  # and never read
                counts[name] += 1
                await asyncio.sleep(3)
                writer.transport.abort()
            except OSError:
                await asyncio.sleep(0.2)

    async def idle() -> None:
        held: list[Any] = []
        while time.monotonic() < deadline:
            try:
                held.append((await asyncio.open_connection(host, int(port), local_addr=(source(), 0)))[1])
                counts["idle-connections"] += 1
            except OSError:
                await asyncio.sleep(0.2)
            if len(held) > 2 * CONNECTIONS:
                held.pop(0).transport.abort()
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one(n, d) for n, d in attacks.items()), idle())
    return counts


async def _attack_http(url: str, seconds: float) -> dict[str, int]:
    import aiohttp

    host, port = url.removeprefix("http://").rsplit(":", 1)
    counts = {"unsigned-offers": 0, "oversized-offers": 0, "slow-headers": 0}
    deadline = time.monotonic() + seconds

    async def offers(name: str, body: bytes) -> None:
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.5", 0), limit=16)
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.monotonic() < deadline:
                try:
                    async with session.post(url + "/offer", data=body) as response:
                        await response.read()
                        counts[name] += 1
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.1)

    async def slowloris() -> None:
        held: list[Any] = []
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection(host, int(port), local_addr=("127.0.0.6", 0))
                writer.write(b"POST /offer HTTP/1.1\r\nHost: x\r\n")
                held.append(writer)
                counts["slow-headers"] += 1
            except OSError:
                pass
            if len(held) > 100:
                held.pop(0).transport.abort()
            await asyncio.sleep(0.05)

    offer = json.dumps({"type": "offer", "sdp": "v=0\r\n" + "a=candidate:x\r\n" * 10}).encode()
    huge = json.dumps({"type": "offer", "sdp": "a" * (4 << 20)}).encode()
    await asyncio.gather(offers("unsigned-offers", offer), offers("oversized-offers", huge), slowloris())
    return counts


# ------------------------------------------------------------------ the measuring process

_fresh = [0]


def _from_fresh_addresses() -> None:
    """Make every TCP connection this process dials to loopback come from a fresh source
    address (127.200.x.y, one per connection): a legitimate worker no cap has seen before."""
    import asyncio.base_events

    dial = asyncio.base_events.BaseEventLoop.create_connection

    async def create_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        host = kwargs.get("host", args[1] if len(args) > 1 else None)
        if kwargs.get("local_addr") is None and kwargs.get("sock") is None and str(host).startswith("127."):
            _fresh[0] += 1
            n = _fresh[0]
            kwargs["local_addr"] = (f"127.200.{n // 250 % 250}.{n % 250 + 1}", 0)
        return await dial(self, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.create_connection = create_connection  # type: ignore[method-assign]

    import aiohttp.connector  # aiohttp makes its sockets itself (happy eyeballs), then hands them over

    start = aiohttp.connector.aiohappyeyeballs.start_connection

    async def start_connection(addr_infos: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("local_addr_infos") and all(str(info[4][0]).startswith("127.") for info in addr_infos):
            _fresh[0] += 1
            n = _fresh[0]
            source = (f"127.200.{n // 250 % 250}.{n % 250 + 1}", 0)
            kwargs["local_addr_infos"] = [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", source)]
        return await start(addr_infos, *args, **kwargs)

    aiohttp.connector.aiohappyeyeballs.start_connection = start_connection


def _sample(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def _legit(url: str, root: Path, out: Path, secret: str | None) -> bool:
    from rxchannel.core import with_secret
    from rxchannel.files import fetch_file, sha256_file
    from rxchannel.runtime import connect
    from rxchannel.transports import TransportOptions

    try:
        async with asyncio.timeout(60):
            peer = await connect(
                url, config=with_secret(None, secret, server=False), options=TransportOptions(secret=secret)
            )
            try:
                result = await fetch_file(peer, "legit.bin", out, window=16, overwrite=True, resume=False)
            finally:
                await peer.close()
        return result.sha256 == sha256_file(root / "legit.bin")
    except Exception as exc:
        print(f"legit fetch failed: {exc!r}", file=sys.stderr)
        return False


#: the floods of the many-address mode, per kind of hub: (attack, its block of 127.B.0.0/16, per address)
FLOODS = {
    "tcp": [("silent", 31, 2), ("setup", 32, 2)],
    "webrtc": [("slowloris", 33, 2), ("upgrade", 34, 2), ("offers", 35, 1)],
}


def _floods(kind: str, url: str, addresses: int, seconds: float) -> list[subprocess.Popen[str]]:
    started = []
    for attack, block, per in FLOODS[kind]:
        command = [sys.executable, "-m", "tests.hostile.flood", attack, url, "--block", str(block)]
        command += ["--addresses", str(addresses), "--per-address", str(per), "--seconds", str(seconds)]
        command += ["--secret", SECRET] if kind == "webrtc" else []
        started.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    return started


async def _round(kind: str, seconds: float, root: Path, tmp: Path, addresses: int = 0) -> dict[str, Any]:
    args = ["--transport", kind, "--max-connections", str(CONNECTIONS), "--log-level", "error"]
    secret = SECRET if kind == "webrtc" else None
    if secret:
        args += ["--secret", secret]
    hub = subprocess.Popen(  # one process: its RSS and fds are the hub's
        [*RX, "serve", str(root), "--port", "0", "--processes", "1", *args], stdout=subprocess.PIPE, text=True
    )
    assert hub.stdout is not None
    url = hub.stdout.readline().strip()
    try:
        ok = await _legit(url, root, tmp / "legit.bin", secret)
        base_rss, base_fds = _sample(hub.pid)
        if addresses:
            attackers = _floods(kind, url, addresses, seconds)
        else:
            attack = [*SELF, "attack", kind, url, str(seconds)]
            attackers = [subprocess.Popen(attack, stdout=subprocess.PIPE, text=True)]
        fetches = {"ok": int(ok), "failed": int(not ok)}
        peak_rss, peak_fds = base_rss, base_fds
        halves = [base_rss, base_rss]  # the RSS peak of each half of the round
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            good = await _legit(url, root, tmp / "legit.bin", secret)
            fetches["ok" if good else "failed"] += 1
            rss, fds = _sample(hub.pid)
            peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
            half = int(time.monotonic() - start > seconds / 2)
            halves[half] = max(halves[half], rss)
            await asyncio.sleep(1)
        attacks: dict[str, Any] = {}
        for attacker in attackers:
            out, _ = attacker.communicate(timeout=60)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            summary = json.loads(lines[-1]) if lines else {}
            if "kind" in summary:  # a flood: what it opened, and how many of those the hub closed
                attacks[summary["kind"]] = f"{summary['opened']} ({summary['closed_by_hub']} closed)"
            else:
                attacks.update(summary)
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=30)
    return {
        "hub": kind,
        "addresses": addresses,
        "seconds": seconds,
        "attacks": attacks,
        "legit_fetches": fetches,
        "hub_rss_mb": {
            "after_first_fetch": round(base_rss, 1),
            "peak": round(peak_rss, 1),
            "peak_first_half": round(halves[0], 1),
            "peak_second_half": round(halves[1], 1),
        },
        "hub_fds": {"after_first_fetch": base_fds, "peak": peak_fds},
    }


def _check(result: dict[str, Any], max_growth: float, max_late_growth: float) -> list[str]:
    problems = []
    if result["legit_fetches"]["failed"]:
        problems.append(f"{result['hub']}: {result['legit_fetches']['failed']} legitimate fetches failed")
    growth = result["hub_rss_mb"]["peak"] - result["hub_rss_mb"]["after_first_fetch"]
    if growth > max_growth:
        problems.append(f"{result['hub']}: hub RSS grew {growth:.0f} MB (bound {max_growth:.0f})")
    rss = result["hub_rss_mb"]
    late = rss["peak_second_half"] - rss["peak_first_half"]
    if late > max_late_growth:
        problems.append(f"{result['hub']}: hub RSS still grew {late:.0f} MB in the second half (a leak?)")
    # the connections, their headroom (an eighth), and for WebRTC the pending offers' UDP sockets
    cap = CONNECTIONS + CONNECTIONS // 8 + 64 + (64 * 4 if result["addresses"] and result["hub"] == "webrtc" else 0)
    if result["hub_fds"]["peak"] > cap:
        problems.append(f"{result['hub']}: {result['hub_fds']['peak']} fds open (bound {cap})")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["attack"]:
        kind, url, seconds = argv[1], argv[2], float(argv[3])
        attack = _attack_tcp if kind == "tcp" else _attack_http
        print(json.dumps(asyncio.run(attack(url, seconds))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.hostile.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="per round (default 120)")
    parser.add_argument("--max-rss-growth", type=float, default=128.0, help="MB (default 128)")
    parser.add_argument(
        "--max-late-growth", type=float, default=32.0, help="MB the second half's peak may exceed the first's (32)"
    )
    parser.add_argument(
        "--addresses", type=int, default=0, help="the many-address mode: each flood from this many addresses"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.addresses:
        _from_fresh_addresses()
    from tests.support import make_file

    results = []
    with tempfile.TemporaryDirectory(prefix="rxchannel-soak-") as tmp:
        root = Path(tmp, "root")
        make_file(root / "legit.bin", 4 << 20, seed=1)
        make_file(root / "big.bin", 4 << 20, seed=2)
        for i in range(300):
            make_file(root / "many" / f"f{i:04}.bin", 10, seed=i)
        for kind in ("tcp", "webrtc"):
            results.append(asyncio.run(_round(kind, args.seconds, root, Path(tmp), args.addresses)))
    problems = [p for r in results for p in _check(r, args.max_rss_growth, args.max_late_growth)]
    if args.json:
        print(json.dumps({"rounds": results, "problems": problems}))
    else:
        header = f"{'hub':7} {'legit ok/failed':>16} {'RSS MB base/peak (1st/2nd half)':>32} {'fds base/peak':>14}"
        print(header + "  attacks")
        for r in results:
            fetched = f"{r['legit_fetches']['ok']}/{r['legit_fetches']['failed']}"
            m = r["hub_rss_mb"]
            rss = (
                f"{m['after_first_fetch']:.0f}/{m['peak']:.0f} ({m['peak_first_half']:.0f}/{m['peak_second_half']:.0f})"
            )
            fds = f"{r['hub_fds']['after_first_fetch']}/{r['hub_fds']['peak']}"
            attacks = ", ".join(f"{k} {v}" for k, v in r["attacks"].items())
            print(f"{r['hub']:7} {fetched:>16} {rss:>32} {fds:>14}  {attacks}")
        for problem in problems:
            print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
