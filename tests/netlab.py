"""Hosts for tests and benchmarks that cross a network: Linux network namespaces joined by veth
pairs, routers with iptables NAT, a coturn server, and a userspace link emulator.

Needs root (CI runs ``make test`` as root), ``ip`` (iproute2), ``iptables`` and
``turnserver`` (Debian's ``coturn``): ``make test`` installs the last two. Every
namespace is named ``rxlab<pid>-…`` and removed when the :class:`Lab` closes, whatever
happened; a lab also removes namespaces left behind by processes that no longer exist.
Traffic never leaves the lab's namespaces: none of them is linked to the root namespace.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PREFIX = "rxlab"
REPO = Path(__file__).resolve().parent.parent
_counter = itertools.count()

RX = [sys.executable, "-m", "rxchannel"]


def missing_tools() -> list[str]:
    """What this machine lacks for namespace tests (empty when they can run)."""
    missing = [tool for tool in ("ip", "ss", "iptables", "ethtool", "turnserver") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def remove_stale() -> None:
    """Remove lab namespaces whose creating process is gone (a crashed earlier run)."""
    listing = _sh("ip", "netns", "list", check=False).stdout
    for name in re.findall(rf"^({PREFIX}(\d+)-\S+)", listing, re.MULTILINE):
        full, pid = name
        if not Path(f"/proc/{pid}").exists():
            _sh("ip", "netns", "del", full, check=False)


@dataclass
class Host:
    """One network namespace (a machine of the lab)."""

    lab: Lab
    name: str
    ns: str
    addresses: list[str] = field(default_factory=list)
    _ifaces: int = 0

    def ip(self, *argv: str) -> None:
        _sh("ip", "-n", self.ns, *argv)

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def next_iface(self) -> str:
        self._ifaces += 1
        return f"eth{self._ifaces - 1}"

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start a process in this host; the lab ends it when it closes."""
        kwargs.setdefault("text", True)
        kwargs.setdefault("cwd", REPO)
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], **kwargs)
        self.lab.processes.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("cwd", REPO)
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *argv], capture_output=True, text=True, timeout=timeout, **kwargs
        )

    def route_default(self, via: str) -> None:
        self.ip("route", "add", "default", "via", via)

    def forward(self) -> None:
        self.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

    def masquerade(self, out_iface: str, *, symmetric: bool = False) -> None:
        """NAT everything leaving ``out_iface``; ``symmetric``: a new random port per destination."""
        extra = ["--random-fully"] if symmetric else []
        self.exec("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", out_iface, "-j", "MASQUERADE", *extra)

    def port_forward(self, in_iface: str, proto: str, port: int, to: str) -> None:
        """Forward ``proto`` port ``port`` arriving on ``in_iface`` to ``to`` (a router's port mapping)."""
        self.exec(
            "iptables", "-t", "nat", "-A", "PREROUTING", "-i", in_iface, "-p", proto,
            "--dport", str(port), "-j", "DNAT", "--to-destination", f"{to}:{port}",
        )  # fmt: skip

    def drop_udp(self) -> None:
        """A firewall that lets no UDP in or out of this host (TCP still works)."""
        for chain in ("INPUT", "OUTPUT"):
            self.exec("iptables", "-A", chain, "-p", "udp", "-j", "DROP")


class Lab:
    """A set of namespaces, removed on :meth:`close` (use as a context manager)."""

    def __init__(self) -> None:
        remove_stale()
        self.id = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.hosts: list[Host] = []
        self.processes: list[subprocess.Popen[str]] = []
        self._links = 0

    def host(self, name: str) -> Host:
        ns = f"{self.id}-{name}"
        _sh("ip", "netns", "add", ns)
        host = Host(self, name, ns)
        self.hosts.append(host)
        host.ip("link", "set", "lo", "up")
        return host

    def link(self, a: Host, a_cidr: str, b: Host, b_cidr: str) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b`` with these addresses; returns the two interface names."""
        self._links += 1
        tmp_a, tmp_b = f"rxv{os.getpid() % 100000}{self._links}a", f"rxv{os.getpid() % 100000}{self._links}b"
        _sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        names = []
        for host, tmp, cidr in ((a, tmp_a, a_cidr), (b, tmp_b, b_cidr)):
            name = host.next_iface()
            _sh("ip", "link", "set", tmp, "netns", host.ns)
            host.ip("link", "set", tmp, "name", name)
            if cidr:
                host.ip("addr", "add", cidr, "dev", name)
                host.addresses.append(cidr.split("/")[0])
            host.ip("link", "set", name, "up")
            names.append(name)
        return names[0], names[1]

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for host in self.hosts:
            _sh("ip", "netns", "del", host.ns, check=False)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ the lab's machines


def start_coturn(host: Host, address: str, secret: str, *, port: int = 3478) -> subprocess.Popen[str]:
    """Debian's coturn on ``address``, authenticating with TURN REST credentials (``use-auth-secret``)."""
    state = Path(f"/tmp/{host.ns}-turn")
    state.mkdir(exist_ok=True)
    proc = host.popen(
        [
            "turnserver", "-n", f"--listening-ip={address}", f"--relay-ip={address}", f"--listening-port={port}",
            "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=rxchannel.test",
            "--no-tls", "--no-dtls", "--no-cli", "--min-port=49152", "--max-port=49999",
            "--log-file=stdout", "--simple-log", f"--pidfile={state}/pid", f"--userdb={state}/db",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    _drain(proc.stdout)
    deadline = time.monotonic() + 20
    while f"{address}:{port}" not in host.exec("ss", "-Hlun").stdout:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"coturn did not start listening on {address}:{port}")
        time.sleep(0.05)
    return proc


def _drain(stream: IO[str]) -> None:
    """Keep reading a child's output so it never blocks on a full pipe."""
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def start_hub(host: Host, root: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``rxchannel serve ROOT`` in ``host``; returns the process and the URLs it printed.

    A wildcard bind prints one URL per address, loopback last: read up to that one.
    """
    proc = host.popen([*RX, "serve", str(root), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    wildcard = "--host" in extra and extra[list(extra).index("--host") + 1] in ("0.0.0.0", "::")
    urls: list[str] = []
    for line in proc.stdout:
        urls.append(line.strip())
        if not wildcard or "127.0.0.1" in line or "[::1]" in line:
            break
    if not urls:
        raise RuntimeError(f"the hub exited ({proc.wait()}): {proc.stderr.read()}")
    _drain(proc.stdout)
    _drain(proc.stderr)
    return proc, urls


# ------------------------------------------------------------------ topologies


@dataclass
class Net:
    """A built topology: its lab and its machines by role (``hub``, ``worker``, ``turn``, ...)."""

    lab: Lab
    hub: Host
    worker: Host
    hub_ip: str
    turn: Host | None = None
    turn_ip: str = ""
    public_hub_ip: str = ""  # where workers dial the hub (its router's address when it is behind NAT)
    others: dict[str, Host] = field(default_factory=dict)
    rendezvous: subprocess.Popen[str] | None = None  # the rendezvous process on the public side, if any


def lan(made: Lab) -> Net:
    """Two machines on one LAN: hub 10.1.0.1, worker 10.1.0.2."""
    hub, worker = made.host("hub"), made.host("worker")
    made.link(hub, "10.1.0.1/24", worker, "10.1.0.2/24")
    return Net(made, hub, worker, "10.1.0.1", public_hub_ip="10.1.0.1")


def emulated(made: Lab, *emu_args: str) -> Net:
    """Hub 10.1.0.1 and worker 10.1.0.2 on one subnet, joined through the link emulator (``tests.linkemu``)."""
    hub, worker, middle = made.host("hub"), made.host("worker"), made.host("link")
    _, side_a = made.link(hub, "10.1.0.1/24", middle, "")
    _, side_b = made.link(worker, "10.1.0.2/24", middle, "")
    for iface in (side_a, side_b):
        middle.ip("link", "set", iface, "promisc", "on")
    for machine in (hub, worker):
        # frames leave a veth with checksums left to "hardware"; a userspace bridge copies them as they
        # are, so the hosts must compute checksums and segment in software
        machine.exec("ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off")
    emulator = middle.popen([sys.executable, "-m", "tests.linkemu", side_a, side_b, *emu_args], stdout=subprocess.PIPE)
    assert emulator.stdout is not None
    if emulator.stdout.readline().strip() != "ready":
        raise RuntimeError("the link emulator did not start")
    return Net(made, hub, worker, "10.1.0.1", public_hub_ip="10.1.0.1", others={"link": middle})


def internet(
    made: Lab,
    *,
    worker_nat: str | None,
    hub_nat: str | None,
    turn_secret: str | None = None,
    hub_port: int | None = 8765,
    rendezvous_secret: str | None = None,
) -> Net:
    """An "internet" router (100.64.0.0/16) with the worker, the hub and optionally coturn around it.

    ``worker_nat``/``hub_nat``: None (a public address on the internet), ``"cone"``
    (MASQUERADE) or ``"symmetric"`` (MASQUERADE --random-fully: a new port per
    destination). A hub behind NAT has its router forward TCP ``hub_port`` to it (its
    signaling), as a home router's port mapping would, unless ``hub_port`` is None (no
    port open at all); UDP gets nothing forwarded. With ``rendezvous_secret``, a
    rendezvous runs on the public side (``rxchannel rendezvous``, port 8700).
    Worker: 192.168.1.2 behind 100.64.1.2, or 100.64.1.2; hub: 192.168.2.2 behind
    100.64.2.2, or 100.64.2.2; coturn: 100.64.3.2; rendezvous: 100.64.4.2.
    """
    inet = made.host("inet")
    inet.forward()
    net_hosts: dict[str, Host] = {"inet": inet}

    def attach(role: str, index: int, nat: str | None) -> tuple[Host, str]:
        public = f"100.64.{index}.2"
        if nat is None:
            machine = made.host(role)
            made.link(inet, f"100.64.{index}.1/24", machine, f"{public}/24")
            machine.route_default(f"100.64.{index}.1")
            return machine, public
        router, machine = made.host(f"{role}-nat"), made.host(role)
        net_hosts[f"{role}-nat"] = router
        _, wan = made.link(inet, f"100.64.{index}.1/24", router, f"{public}/24")
        made.link(router, f"192.168.{index}.1/24", machine, f"192.168.{index}.2/24")
        router.forward()
        router.route_default(f"100.64.{index}.1")
        router.masquerade(wan, symmetric=nat == "symmetric")
        # like a home router: unsolicited UDP from the internet is dropped silently (an ICMP
        # "port unreachable" and the connection it leaves behind would make the router pick
        # another port for the hole the inside is punching)
        router.exec(
            "iptables", "-A", "INPUT", "-i", wan, "-p", "udp", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"
        )
        machine.route_default(f"192.168.{index}.1")
        if role == "hub" and hub_port is not None:
            router.port_forward(wan, "tcp", hub_port, f"192.168.{index}.2")
        return machine, f"192.168.{index}.2"

    worker, _ = attach("worker", 1, worker_nat)
    hub, hub_ip = attach("hub", 2, hub_nat)
    net = Net(made, hub, worker, hub_ip, public_hub_ip="100.64.2.2", others=net_hosts)
    if turn_secret is not None:
        turn = made.host("turn")
        made.link(inet, "100.64.3.1/24", turn, "100.64.3.2/24")
        turn.route_default("100.64.3.1")
        start_coturn(turn, "100.64.3.2", turn_secret)
        net.turn, net.turn_ip = turn, "100.64.3.2"
    if rendezvous_secret is not None:
        meet = made.host("meet")
        made.link(inet, "100.64.4.1/24", meet, "100.64.4.2/24")
        meet.route_default("100.64.4.1")
        proc = meet.popen(
            [*RX, "rendezvous", "--host", "100.64.4.2", "--port", "8700", "--secret", rendezvous_secret],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdout.readline().strip() != "http://100.64.4.2:8700":
            raise RuntimeError(f"the rendezvous did not start: {proc.stderr.read()}")
        _drain(proc.stdout)
        _drain(proc.stderr)
        net.others["meet"] = meet
        net.rendezvous = proc
    return net


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    with Lab() as made:
        yield made


# ------------------------------------------------------------------ run inside a namespace

ANSWER_SCRIPT = """
import asyncio, json, sys
import aiohttp
from rxchannel.webrtc.aiortc_stack import rtc_peer_connection as new_peer_connection

async def main(url):
    pc = new_peer_connection()
    pc.createDataChannel("probe")
    await pc.setLocalDescription(await pc.createOffer())
    offer = {"type": "offer", "sdp": pc.localDescription.sdp}
    async with aiohttp.ClientSession() as session, session.post(url + "/offer", json=offer) as response:
        print(json.dumps(await response.json()))
    await pc.close()

asyncio.run(main(sys.argv[1]))
"""


def answer_sdp(host: Host, url: str) -> str:
    """The SDP a hub answers an offer from ``host`` with (the offer made by a real aiortc peer)."""
    done = host.run([sys.executable, "-c", ANSWER_SCRIPT, url], timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"the offer failed: {done.stderr}")
    return str(__import__("json").loads(done.stdout)["sdp"])


def candidate_addresses(sdp: str) -> list[str]:
    """The connection addresses of an SDP's candidates, in order."""
    return re.findall(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", sdp, re.MULTILINE)
