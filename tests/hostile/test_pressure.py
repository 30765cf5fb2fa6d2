"""Floods from many addresses (issue 26): the caps must not become the denial of service.

Each attack comes from at least 200 loopback source addresses (client sockets bound to
127.x.y.z) against a real hub process (``rxchannel serve --processes 1``, small caps so
that the attack fills them), while a legitimate worker on an address no attacker uses
(127.0.0.1) fetches a file and verifies it, again and again, *during* the attack. Each
legitimate fetch must succeed with its first byte within :data:`FIRST_BYTE` seconds;
the hub's RSS and open fds are sampled meanwhile and must stay within what its caps
allow; and the hub's log must not grow with the attack (evictions and refusals are
logged a few lines per ten seconds, whatever their number).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import with_secret
from rxchannel.files import fetch_file, sha256_file
from rxchannel.transports import TransportOptions
from rxchannel.webrtc.options import WebRtcOptions
from tests.support import make_file

RX = [sys.executable, "-m", "rxchannel"]
#: the bound on a legitimate worker's time to its first byte while an attack runs (seconds)
FIRST_BYTE = 5.0
#: the hub's connection cap in these tests (its headroom is an eighth, at least 4)
CAP = 64
#: how many legitimate fetches each attack must let through, one after the other
FETCHES = 3
#: seconds between two legitimate fetches
PAUSE = 1.0
#: attacking addresses per test
ADDRESSES = 200
SECRET = "pressure-secret"


# ------------------------------------------------------------------ the hub process


@dataclass
class Hub:
    proc: subprocess.Popen[str]
    url: str
    root: Path
    log: Path
    samples: list[tuple[float, int]] = field(default_factory=list)

    def sample(self) -> tuple[float, int]:
        with open(f"/proc/{self.proc.pid}/status") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
        fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        self.samples.append((rss, fds))
        return rss, fds

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    @property
    def peak_rss(self) -> float:
        return max(rss for rss, _ in self.samples)

    @property
    def peak_fds(self) -> int:
        return max(fds for _, fds in self.samples)


@contextlib.asynccontextmanager
async def hub_process(tmp: Path, kind: str, *args: str, command: list[str] | None = None) -> AsyncIterator[Hub]:
    """A hub process (or, given ``command``, another: a rendezvous) logging warnings to a file."""
    root = tmp / "root"
    make_file(root / "legit.bin", 1 << 20, seed=26)
    log = tmp / f"hub-{kind}-{time.monotonic_ns()}.log"
    if command is None:
        command = [*RX, "serve", str(root), "--port", "0", "--processes", "1", "--transport", kind]
        command += ["--log-level", "warning", "--max-connections", str(CAP), *args]
    with open(log, "w") as err:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    url = await asyncio.to_thread(proc.stdout.readline)
    hub = Hub(proc, url.strip(), root, log)
    try:
        assert hub.url, log.read_text()
        yield hub
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Fetches:
    ok: int = 0
    first_bytes: list[float] = field(default_factory=list)


async def legit_fetches(hub: Hub, tmp: Path, count: int = FETCHES, **options: Any) -> Fetches:
    """``count`` fetches one after the other from 127.0.0.1, each verified; raises on the first
    that fails or takes more than FIRST_BYTE seconds to its first byte. The hub is sampled
    after each."""
    done = Fetches()
    secret = options.pop("secret", None)
    for n in range(count):
        started = time.monotonic()
        first: list[float] = []

        def progress(got: int, _total: int | None, _credits: int, first: list[float] = first) -> None:
            if got and not first:
                first.append(time.monotonic() - started)  # noqa: B023 - read at once, in this iteration

        out = tmp / f"legit-{time.monotonic_ns()}.bin"
        async with asyncio.timeout(FIRST_BYTE + 30):
            peer = await rx.connect(
                hub.url,
                config=with_secret(None, secret, server=False),
                options=TransportOptions(secret=secret, **options),
            )
            try:
                result = await fetch_file(peer, "legit.bin", out, window=16, progress=progress)
            finally:
                await peer.close()
        assert result.sha256 == sha256_file(hub.root / "legit.bin") == sha256_file(out)
        assert first and first[0] <= FIRST_BYTE, f"fetch {n}: first byte after {first} s (bound {FIRST_BYTE} s)"
        done.ok += 1
        done.first_bytes.append(round(first[0], 3))
        hub.sample()
        if n + 1 < count:
            await asyncio.sleep(PAUSE)  # the attack goes on between fetches: its next wave comes in
    return done


def check_bounds(hub: Hub, base: tuple[float, int], *, rss_growth: float = 64.0, fds: int | None = None) -> None:
    """The hub's RSS grew at most ``rss_growth`` MB over ``base``; its fds stayed within the
    connection cap and its headroom (plus what it had before: listening sockets, the log...)."""
    bound = fds if fds is not None else CAP + max(4, CAP // 8) + base[1] + 8
    assert hub.peak_fds <= bound, f"{hub.peak_fds} fds open in the hub (bound {bound})"
    assert hub.peak_rss - base[0] <= rss_growth, f"hub RSS {base[0]:.0f} -> {hub.peak_rss:.0f} MB"


def check_log(hub: Hub, attacks: int) -> None:
    """Nothing logged per attacker: each of the hub's loggers says at most 5 lines then one
    '... and N more' per 10 s, whatever the attack's size."""
    lines = hub.log_lines()
    assert len(lines) <= 40, f"{len(lines)} log lines for {attacks} attacking connections:\n" + "\n".join(lines[:50])
    assert attacks >= 2 * len(lines), (attacks, len(lines))


async def sampling(hub: Hub, stop: asyncio.Event) -> None:
    while not stop.is_set():
        hub.sample()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await stop.wait()


async def sampled(hub: Hub, work: Awaitable[Fetches]) -> Fetches:
    """``work`` while the hub is sampled five times a second."""
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(sampling(hub, stop))
    try:
        return await work
    finally:
        stop.set()
        await sampler


@contextlib.asynccontextmanager
async def attacking(
    kind: str, url: str, block: int, *, per_address: int = 2, count: int = ADDRESSES, secret: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Attack ``kind`` from ``count`` addresses in 127.<block>.0.0/16, in a process of its own
    (:mod:`tests.hostile.flood`), from its first wave in until the block ends; the dict it
    yields is filled with the attacker's summary then."""
    args = [kind, url, "--block", str(block), "--addresses", str(count), "--per-address", str(per_address)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.hostile.flood", *args, *(["--secret", secret] if secret else []),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    summary: dict[str, Any] = {}
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
        assert line.strip() == b"ready", f"the attacker did not start: {line!r}"
        yield summary
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out = await asyncio.wait_for(proc.stdout.read(), 30)
        await proc.wait()
        lines = out.decode().strip().splitlines()
        if lines:
            summary.update(json.loads(lines[-1]))


# ------------------------------------------------------------------ connections that never get anywhere


async def attacked(
    hub: Hub, tmp: Path, attack: str, block: int, options: dict[str, Any], **attack_options: Any
) -> tuple[dict[str, Any], Fetches, tuple[float, int]]:
    """One fetch before, then ``attack`` from 127.<block>.0.0/16 while the worker fetches:
    the attacker's summary, the fetches during the attack, and the hub's sample before it."""
    await legit_fetches(hub, tmp, 1, **options)
    base = hub.sample()
    async with attacking(attack, hub.url, block, **attack_options) as summary:
        fetched = await sampled(hub, legit_fetches(hub, tmp, **options))
    return summary, fetched, base


SECRET_WEBRTC: dict[str, Any] = {"secret": SECRET, "webrtc": WebRtcOptions(via="webrtc")}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("what", "transport", "hub_args", "attack", "block", "per_address", "options"),
    [
        ("silent TCP connections", "tcp", (), "silent", 11, 3, {}),
        # a request line and one header, then a header line a second: never a complete request
        ("slow-loris headers", "webrtc", ("--secret", SECRET), "slowloris", 12, 2, SECRET_WEBRTC),
        # the hub's direct path: /rsocket on the HTTP port
        ("WebSocket upgrades without SETUP", "webrtc", (), "upgrade", 13, 2, {}),
        ("SETUPs that never request", "tcp", (), "setup", 14, 2, {}),
    ],
    ids=["silent-tcp", "slowloris-webrtc", "upgrade-without-setup", "setup-without-request"],
)
async def test_connections_from_many_addresses_that_never_get_anywhere_do_not_lock_out_a_worker(
    tmp_path: Path,
    what: str,
    transport: str,
    hub_args: tuple[str, ...],
    attack: str,
    block: int,
    per_address: int,
    options: dict[str, Any],
) -> None:
    async with hub_process(tmp_path, transport, *hub_args) as hub:
        summary, fetched, base = await attacked(hub, tmp_path, attack, block, options, per_address=per_address)
        assert summary["opened"] >= 2 * CAP and summary["closed_by_hub"] > 0, summary
        check_bounds(hub, base)
        check_log(hub, summary["opened"])
    report(what, summary, fetched, hub, base)


# ------------------------------------------------------------------ half-sent messages


@pytest.mark.timeout(120)
async def test_websocket_messages_half_sent_hold_at_most_their_budget(tmp_path: Path) -> None:
    """40 connections from 40 addresses each send SETUP then half of a 6 MiB message: 120 MiB
    asked to be held; the listener's budget for unfinished messages (16 MiB here) sheds them."""
    async with hub_process(tmp_path, "ws", "--max-unfinished", "16MiB") as hub:
        attack, fetched, base = await attacked(hub, tmp_path, "half", 15, {}, per_address=1, count=40)
        check_bounds(hub, base, rss_growth=16 + 32)  # the budget, plus what the allocator keeps
        assert attack["closed_by_hub"] >= 20, attack
        assert any("unfinished WebSocket messages" in line for line in hub.log_lines()), hub.log_lines()
    report("half-sent WebSocket messages", attack, fetched, hub, base)


# ------------------------------------------------------------------ offers


@pytest.mark.timeout(150)
async def test_unsigned_and_signed_but_abandoned_offers_do_not_lock_out_a_webrtc_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rxchannel.webrtc import offerer

    # the legitimate worker's offer must be answered the first time: a hub that refused it
    # while the cap is full of abandoned offers would let it in only once they expire
    monkeypatch.setattr(offerer, "BUSY_RETRIES", 0)
    async with hub_process(tmp_path, "webrtc", "--secret", SECRET, "--max-pending-offers", "32") as hub:
        attack, fetched, base = await attacked(hub, tmp_path, "offers", 16, SECRET_WEBRTC, per_address=1, secret=SECRET)
        statuses = {int(k): v for k, v in attack["statuses"].items()}
        # unsigned offers are refused (401) before any peer connection, or their connection made
        # room for a newcomer before they were read (503); signed ones are answered (200) and
        # abandoned, or pushed out by newer ones (503)
        assert set(statuses) <= {200, 401, 429, 503}, statuses
        assert statuses.get(200, 0) >= 32, f"the signed offers did not fill the cap: {statuses}"
        # each pending offer holds a few UDP sockets: at most 32 of them at once
        check_bounds(hub, base, rss_growth=96, fds=CAP + 8 + base[1] + 8 + 32 * 4)
        check_log(hub, attack["opened"])
    report("unsigned and signed-but-abandoned offers", attack, fetched, hub, base)


@pytest.mark.timeout(150)
async def test_a_flood_at_a_rendezvous_from_many_addresses_does_not_lock_out_a_worker_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offers (unsigned, and signed ones abandoned) and silent connections from 200 addresses at
    a rendezvous process, relayed to a hub process registered there; a worker dials the hub
    by its name through the rendezvous, over WebRTC, and must get its first byte in time."""
    from rxchannel.webrtc import offerer

    monkeypatch.setattr(offerer, "BUSY_RETRIES", 0)
    meet = [*RX, "rendezvous", "--port", "0", "--secret", "rv", "--log-level", "warning"]
    meet += ["--max-connections", str(CAP)]
    async with hub_process(tmp_path, "rendezvous", command=meet) as rendezvous:
        register = ["--rendezvous", rendezvous.url, "--name", "lab", "--rendezvous-secret", "rv", "--secret", SECRET]
        async with hub_process(tmp_path, "webrtc", *register) as hub:
            assert hub.url == rendezvous.url + "/hubs/lab", hub.url
            await legit_fetches(hub, tmp_path, 1, **SECRET_WEBRTC)
            base, hub_base = rendezvous.sample(), hub.sample()
            async with attacking("relay", hub.url, 18, per_address=1, secret=SECRET) as attack:
                fetched = await sampled(rendezvous, legit_fetches(hub, tmp_path, **SECRET_WEBRTC))
            hub.sample()
        statuses = {int(k): v for k, v in attack["statuses"].items()}
        assert set(statuses) <= {0, 200, 401, 429, 503, 504}, statuses
        check_bounds(rendezvous, base)
        check_bounds(hub, hub_base, rss_growth=96, fds=CAP + 8 + hub_base[1] + 8 + 64 * 4)
        check_log(rendezvous, attack["opened"])
        check_log(hub, attack["opened"])
    report("a rendezvous flood", attack, fetched, rendezvous, base)
    report("... the hub behind it", attack, fetched, hub, hub_base)


def report(what: str, attack: dict[str, Any], fetched: Fetches, hub: Hub, base: tuple[float, int]) -> None:
    print(
        f"\n{what}: {attack.get('opened')} attacking connections or requests from 127.x "
        f"({attack.get('closed_by_hub')} closed by the hub, statuses {attack.get('statuses')}); "
        f"legitimate fetches {fetched.ok} ok, first byte after {fetched.first_bytes} s; "
        f"hub RSS {base[0]:.0f} -> {hub.peak_rss:.0f} MB, fds {base[1]} -> {hub.peak_fds}; "
        f"{len(hub.log_lines())} log lines"
    )
    for line in hub.log_lines():
        if "under pressure" in line:
            print("   ", line.split("under pressure while it ran: ", 1)[1])
