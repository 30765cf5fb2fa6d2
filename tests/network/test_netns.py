"""A hub and workers on different machines: network namespaces joined by veth pairs, NAT routers
(iptables MASQUERADE, symmetric with ``--random-fully``), a real coturn, real ``rxchannel``
processes. Each test builds its own machines and removes them afterwards (``tests/netlab.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rxchannel.files import sha256_file
from tests.netlab import RX, Lab, answer_sdp, candidate_addresses, emulated, internet, lan, start_hub

TURN_SECRET = "lab-turn-secret"


def fetch(net_host: object, url: str, out: Path, *extra: str, timeout: float = 120) -> object:
    return net_host.run([*RX, "fetch", url, "f.bin", "-o", str(out), "--json", *extra], timeout=timeout)  # type: ignore[attr-defined]


def assert_verified(done: object, root: Path, out: Path) -> dict[str, object]:
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    summary: dict[str, object] = json.loads(done.stdout)  # type: ignore[attr-defined]
    assert summary["sha256"] == sha256_file(root / "f.bin") == sha256_file(out)
    return summary


def test_a_worker_dials_a_hub_on_the_lan_by_ip(lab: Lab, shared: Path, tmp_path: Path) -> None:
    net = lan(lab)
    _, urls = start_hub(net.hub, shared, "--host", net.hub_ip, "--port", "8765")
    assert urls == ["http://10.1.0.1:8765"]
    out = tmp_path / "out.bin"
    summary = assert_verified(fetch(net.worker, urls[0], out), shared, out)
    assert summary["path"] == "direct", "a worker that reaches the hub's port takes the direct path"
    rtc = tmp_path / "rtc.bin"
    summary = assert_verified(fetch(net.worker, urls[0], rtc, "--via", "webrtc"), shared, rtc)
    assert summary["path"] == "webrtc-host", summary
    # send shares the dialing path
    pushed = net.worker.run([*RX, "send", urls[0], str(shared / "f.bin"), "--name", "up.bin", "--json"])
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["sha256"] == sha256_file(shared / "f.bin")


def test_the_hub_advertises_only_the_addresses_it_was_bound_to(lab: Lab, shared: Path, tmp_path: Path) -> None:
    net = lan(lab)
    other = lab.host("other")
    lab.link(net.hub, "10.2.0.1/24", other, "10.2.0.2/24")  # a second interface on the hub

    _, urls = start_hub(net.hub, shared, "--host", "10.1.0.1", "--port", "8765")
    assert candidate_addresses(answer_sdp(net.worker, urls[0])) == ["10.1.0.1"]

    # aiortc advertises every address of a wildcard bind, loopback included
    _, urls = start_hub(net.hub, shared, "--host", "0.0.0.0", "--port", "8766", "--webrtc-stack", "aiortc")
    assert urls == ["http://10.1.0.1:8766", "http://10.2.0.1:8766", "http://127.0.0.1:8766"]
    assert sorted(candidate_addresses(answer_sdp(net.worker, urls[0]))) == ["10.1.0.1", "10.2.0.1", "127.0.0.1"]
    # the native stack the same, but for loopback, where libwebrtc never gathers
    _, native = start_hub(net.hub, shared, "--host", "0.0.0.0", "--port", "8767", "--webrtc-stack", "native")
    assert sorted(candidate_addresses(answer_sdp(net.worker, native[0]))) == ["10.1.0.1", "10.2.0.1"]
    out = tmp_path / "out.bin"
    assert_verified(fetch(net.worker, urls[0], out), shared, out)  # the first URL works from another machine
    local = tmp_path / "local.bin"
    assert_verified(fetch(net.hub, urls[-1], local), shared, local)  # and loopback on the hub's machine


def test_a_worker_behind_nat_fetches_from_a_public_hub(lab: Lab, shared: Path, tmp_path: Path) -> None:
    net = internet(lab, worker_nat="cone", hub_nat=None)
    _, urls = start_hub(net.hub, shared, "--host", net.hub_ip, "--port", "8765")
    out = tmp_path / "out.bin"
    summary = assert_verified(fetch(net.worker, urls[0], out, "--via", "webrtc"), shared, out)
    assert str(summary["path"]).startswith("webrtc-"), summary


def test_both_behind_symmetric_nat_relay_through_coturn_with_only_the_hub_url(
    lab: Lab, shared: Path, tmp_path: Path
) -> None:
    net = internet(lab, worker_nat="symmetric", hub_nat="symmetric", turn_secret=TURN_SECRET)
    start_hub(
        net.hub, shared, "--host", net.hub_ip, "--port", "8765",
        "--turn-url", f"turn:{net.turn_ip}:3478", "--turn-secret", TURN_SECRET,
    )  # fmt: skip
    out = tmp_path / "out.bin"
    # the worker is given nothing but the hub's (port-forwarded) URL: the TURN credentials come from the hub
    summary = assert_verified(
        fetch(net.worker, f"http://{net.public_hub_ip}:8765", out, "--via", "webrtc"), shared, out
    )
    assert summary["path"] == "webrtc-relay", summary


RENDEZVOUS = "http://100.64.4.2:8700"
MEET_SECRET = "lab-rendezvous-secret"


def test_a_hub_with_no_open_port_serves_through_a_rendezvous(lab: Lab, shared: Path, tmp_path: Path) -> None:
    """Issue 24: the hub and the worker each behind a NAT, no port forwarded anywhere; the hub
    dials out to a rendezvous on the public side, and the worker, given only the rendezvous's
    URL for the hub, fetches over WebRTC through both NATs (reflexive candidates from STUN)."""
    net = internet(
        lab, worker_nat="cone", hub_nat="cone", hub_port=None, turn_secret=TURN_SECRET, rendezvous_secret=MEET_SECRET
    )
    stun = f"stun:{net.turn_ip}:3478"  # coturn answers STUN too
    # a wrong secret cannot register the name; the hub says why and exits 1
    refused = net.hub.run(
        [*RX, "serve", str(shared), "--host", "0.0.0.0", "--port", "0",
         "--rendezvous", RENDEZVOUS, "--name", "lab", "--rendezvous-secret", "wrong"]
    )  # fmt: skip
    assert refused.returncode == 1 and "wrong shared secret" in refused.stderr, refused.stderr
    _, urls = start_hub(
        net.hub, shared, "--host", "0.0.0.0", "--port", "0", "--ice-server", stun,
        "--rendezvous", RENDEZVOUS, "--name", "lab", "--rendezvous-secret", MEET_SECRET,
    )  # fmt: skip
    assert urls[0] == f"{RENDEZVOUS}/hubs/lab", urls
    # nothing reaches the hub from outside: its own port is closed to the worker
    probe = net.worker.run(
        [*RX, "ls", f"http://{net.public_hub_ip}:{urls[1].rsplit(':', 1)[1]}", "--connect-timeout", "3"]
    )
    assert probe.returncode == 4, probe.stdout
    out = tmp_path / "out.bin"
    summary = assert_verified(fetch(net.worker, urls[0], out), shared, out)
    assert summary["path"] == "webrtc-srflx", summary  # through the NATs, on addresses STUN saw
    # a second hub cannot take the name over, even with the right secret
    squatter = net.worker.run(
        [*RX, "serve", str(shared), "--port", "0", "--rendezvous", RENDEZVOUS, "--name", "lab",
         "--rendezvous-secret", MEET_SECRET]
    )  # fmt: skip
    assert squatter.returncode == 1 and "is taken by another hub" in squatter.stderr, squatter.stderr
    # the rendezvous stopped before a worker dials: exit 4 and what to check
    assert net.rendezvous is not None
    net.rendezvous.terminate()
    net.rendezvous.wait(timeout=10)
    gone = fetch(net.worker, urls[0], tmp_path / "gone.bin", timeout=60)
    assert gone.returncode == 4, gone.stderr  # type: ignore[attr-defined]
    assert "is the rendezvous running at this address" in gone.stderr  # type: ignore[attr-defined]


def test_both_behind_symmetric_nat_with_no_open_port_relay_through_coturn_via_a_rendezvous(
    lab: Lab, shared: Path, tmp_path: Path
) -> None:
    net = internet(
        lab, worker_nat="symmetric", hub_nat="symmetric", hub_port=None, turn_secret=TURN_SECRET,
        rendezvous_secret=MEET_SECRET,
    )  # fmt: skip
    _, urls = start_hub(
        net.hub, shared, "--host", net.hub_ip, "--port", "8765",
        "--turn-url", f"turn:{net.turn_ip}:3478", "--turn-secret", TURN_SECRET,
        "--rendezvous", RENDEZVOUS, "--name", "far", "--rendezvous-secret", MEET_SECRET,
    )  # fmt: skip
    out = tmp_path / "out.bin"
    # the worker gets the minted TURN credentials through the rendezvous, and nothing else
    summary = assert_verified(fetch(net.worker, urls[0], out), shared, out)
    assert summary["path"] == "webrtc-relay", summary


def test_symmetric_nat_on_both_sides_without_turn_fails_fast_with_a_clear_message(
    lab: Lab, shared: Path, tmp_path: Path
) -> None:
    net = internet(lab, worker_nat="symmetric", hub_nat="symmetric")
    start_hub(net.hub, shared, "--host", net.hub_ip, "--port", "8765")
    out = tmp_path / "out.bin"
    done = fetch(net.worker, f"http://{net.public_hub_ip}:8765", out, "--via", "webrtc", timeout=60)
    assert done.returncode == 4, done.stderr  # type: ignore[attr-defined]
    message = done.stderr  # type: ignore[attr-defined]
    assert "no working candidate pair" in message
    assert "our candidates: host 192.168.1.2" in message and "the peer's: host 192.168.2.2" in message
    assert "is UDP blocked" in message and "--turn-url" in message
    assert not out.exists()


def test_turn_credentials_refused_say_so(lab: Lab, shared: Path, tmp_path: Path) -> None:
    net = internet(lab, worker_nat="symmetric", hub_nat="symmetric", turn_secret=TURN_SECRET)
    turn = f"turn:{net.turn_ip}:3478"
    # a hub with the wrong secret does not start, and says why
    refused = net.hub.run([*RX, "serve", str(shared), "--host", net.hub_ip, "--turn-url", turn, "--turn-secret", "no"])
    assert refused.returncode == 1
    assert "refused the hub's credentials" in refused.stderr and "401" in refused.stderr
    assert "static-auth-secret" in refused.stderr

    # a worker with wrong static credentials learns why its relay is missing
    start_hub(net.hub, shared, "--host", net.hub_ip, "--port", "8765")
    out = tmp_path / "out.bin"
    done = fetch(
        net.worker, f"http://{net.public_hub_ip}:8765", out,
        "--ice-server", turn, "--ice-username", "4102444800:w", "--ice-credential", "wrong", "--via", "webrtc",
        "--webrtc-stack", "aiortc",  # aiortc says why a TURN server refused; libwebrtc does not tell
    )  # fmt: skip
    assert done.returncode == 4, done.stderr  # type: ignore[attr-defined]
    assert f"TURN server {net.turn_ip}:3478" in done.stderr and "401" in done.stderr  # type: ignore[attr-defined]


def test_a_fetch_over_a_slow_lossy_link_completes_verified(lab: Lab, tmp_path: Path) -> None:
    from tests.support import make_file

    root = tmp_path / "root"
    make_file(root / "f.bin", 1024 * 1024, seed=5)
    net = emulated(lab, "--delay-ms", "15", "--loss", "0.02", "--rate-mbit", "40", "--seed", "7")
    _, urls = start_hub(net.hub, root, "--host", net.hub_ip, "--port", "8765")
    out = tmp_path / "out.bin"
    assert_verified(fetch(net.worker, urls[0], out, "--via", "webrtc"), root, out)


def test_udp_ports_let_a_firewall_admit_only_that_range(lab: Lab, shared: Path, tmp_path: Path) -> None:
    net = lan(lab)
    # the hub's firewall: UDP in only to 40000-40003 (the rest of UDP is dropped; TCP 8765 for signaling)
    net.hub.exec("iptables", "-A", "INPUT", "-p", "udp", "--dport", "40000:40003", "-j", "ACCEPT")
    net.hub.exec("iptables", "-A", "INPUT", "-p", "udp", "-j", "DROP")
    _, urls = start_hub(net.hub, shared, "--host", net.hub_ip, "--port", "8765", "--udp-ports", "40000-40003")
    ports = [
        int(p) for p in re.findall(r"^a=candidate:\S+ \d+ \S+ \d+ \S+ (\d+) typ", answer_sdp(net.worker, urls[0]), re.M)
    ]
    assert ports and all(40000 <= p <= 40003 for p in ports), ports
    out = tmp_path / "out.bin"
    assert_verified(fetch(net.worker, urls[0], out, "--via", "webrtc"), shared, out)


@pytest.mark.timeout(360)
def test_a_60_second_link_cut_mid_fetch_is_resumed_without_a_rerun(lab: Lab, tmp_path: Path) -> None:
    """Issue 17: the worker's link goes down for 60 s mid-fetch; the same fetch process re-dials
    when it is back, resumes the session (RSocket RESUME) and exits 0 verified."""
    import subprocess
    import time

    from tests.support import make_file, wait_until

    root = tmp_path / "root"
    make_file(root / "f.bin", 6 * 1024 * 1024, seed=9)
    net = emulated(lab, "--rate-mbit", "8")  # ~1 MB/s: the cut lands mid-transfer
    _, urls = start_hub(net.hub, root, "--host", net.hub_ip, "--port", "8765")
    out = tmp_path / "out.bin"
    part = tmp_path / "out.bin.part"
    worker = net.worker.popen(
        [*RX, "fetch", urls[0], "f.bin", "-o", str(out), "--json", "--via", "webrtc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: part.exists() and part.stat().st_size >= 1024 * 1024, timeout=60, what="1 MiB received")
    net.worker.ip("link", "set", "eth0", "down")
    cut_at = part.stat().st_size
    time.sleep(60)
    assert worker.poll() is None, "the fetch must still be waiting, not failed"
    assert not out.exists()
    net.worker.ip("link", "set", "eth0", "up")
    stdout, stderr = worker.communicate(timeout=240)
    assert worker.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["sha256"] == sha256_file(root / "f.bin") == sha256_file(out)
    assert summary["reconnects"] >= 1 and summary["resumed_from"] == 0  # the same run, not a file-level resume
    assert summary["received"] == summary["bytes"] > cut_at
    assert "reconnecting" in stderr and "reconnected" in stderr
