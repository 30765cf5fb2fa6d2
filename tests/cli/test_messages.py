"""Every mistake a user (or a hostile hub) can make gets an exit code and a message that says
what happened and what to do: never a traceback, never an empty message (issues 11 and 14).

Real hub processes (``rxchannel serve``) on loopback for each transport, and a lying TCP
hub (:mod:`tests.cli.lying`) for what an honest hub never sends.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxchannel.cli import main
from rxchannel.core import ErrorCode, ErrorFrame, PayloadFrame, RequestFrame, encode_composite, encode_frame
from tests.cli.lying import lying_hub
from tests.support import make_file

RX = [sys.executable, "-m", "rxchannel"]
SECRET = "s3cret"


@dataclass
class Hubs:
    root: Path
    tmp: Path
    urls: dict[str, str]


def _start(root: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", "--log-level", "warning", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hubs]:
    tmp = tmp_path_factory.mktemp("hubs")
    root = tmp / "root"
    make_file(root / "a.bin", 200_000, seed=1)
    make_file(root / "log.txt", 10, seed=2)
    make_file(root / "sub" / "x.bin", 1000, seed=3)
    make_file(tmp / "secret.txt", 10, seed=4)
    (root / "outside.txt").symlink_to(tmp / "secret.txt")  # leaves the root: never served, noted by ls
    procs, urls = [], {}
    for name, args in {
        "webrtc": (),
        "webrtc-only": ("--no-direct",),
        "tcp": ("--transport", "tcp"),
        "ws": ("--transport", "ws"),
        "tcp-secret": ("--transport", "tcp", "--secret", SECRET),
        "ws-secret": ("--transport", "ws", "--secret", SECRET),
        "webrtc-secret": ("--secret", SECRET),
    }.items():
        proc, url = _start(root, *args)
        procs.append(proc)
        urls[name] = url
    yield Hubs(root, tmp, urls)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def _busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@dataclass
class Case:
    name: str
    argv: Callable[[Hubs, Path], list[str]]
    code: int
    message: str  # a regex the one stderr line must match


def _host_port(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


CASES = [
    # -------- options refused when parsed, before anything starts (issue 14)
    Case(
        "port too large", lambda h, t: ["serve", str(h.root), "--port", "99999"], 1, r"--port: '99999' is out of range"
    ),
    Case("negative port", lambda h, t: ["serve", str(h.root), "--port", "-1"], 1, r"--port: '-1' is out of range"),
    Case("zero chunk size", lambda h, t: ["serve", str(h.root), "--chunk-size", "0"], 1, r"--chunk-size: .*1KiB"),
    Case("negative chunk size", lambda h, t: ["serve", str(h.root), "--chunk-size", "-5"], 1, r"--chunk-size"),
    Case("no streams", lambda h, t: ["serve", str(h.root), "--max-streams", "0"], 1, r"--max-streams: '0'"),
    Case(
        "bogus ICE server",
        lambda h, t: ["serve", str(h.root), "--port", "0", "--ice-server", "bogus"],
        1,
        r"'bogus' is not an ICE server URL: use stun:",
    ),
    Case("no such root", lambda h, t: ["serve", str(t / "nope"), "--port", "0"], 1, r"is not a directory"),
    Case("window abc", lambda h, t: ["fetch", h.urls["tcp"], "a.bin", "--window", "abc"], 1, r"'abc' is not a window"),
    Case("keepalive 0", lambda h, t: ["fetch", h.urls["tcp"], "a.bin", "--keepalive", "0"], 1, r"--keepalive: '0'"),
    Case("demo size 10XB", lambda h, t: ["demo", "--size", "10XB"], 1, r"'10XB' is not a size"),
    Case(
        "empty path: the whole share needs -o",
        lambda h, t: ["fetch", h.urls["tcp"], ""],
        1,
        r"'' is the hub's whole share: say which directory to fetch it into with -o DIR/",
    ),
    Case("unknown scheme", lambda h, t: ["fetch", "gopher://x", "a"], 1, r"unsupported URL 'gopher://x'"),
    Case("no command", lambda h, t: [], 1, r"the following arguments are required"),
    # -------- the wrong kind of URL for the hub (issue 14): which URL to use instead
    Case(
        "a path in a hub URL",
        lambda h, t: ["fetch", h.urls["webrtc"] + "/log.txt", "a.bin"],
        1,
        r"is not a hub URL: a webrtc hub is dialed as http://127\.0\.0\.1:\d+ ",
    ),
    Case(
        "ws:// at a TCP hub",
        lambda h, t: ["fetch", "ws://" + _host_port(h.urls["tcp"]), "a.bin", "-o", str(t / "x")],
        1,
        r"is a tcp hub, not a ws one: dial tcp://127\.0\.0\.1:\d+$",
    ),
    Case(
        "http:// at a TCP hub",
        lambda h, t: ["fetch", "http://" + _host_port(h.urls["tcp"]), "a.bin", "-o", str(t / "x")],
        1,
        r"is a tcp hub, not a webrtc one: dial tcp://",
    ),
    Case(
        "http:// over WebRTC at a WebSocket hub",
        lambda h, t: ["fetch", "http://" + _host_port(h.urls["ws"]), "a.bin", "-o", str(t / "x"), "--via", "webrtc"],
        1,
        r"is a ws hub, not a webrtc one: dial ws://127\.0\.0\.1:\d+/rsocket$",
    ),
    Case(
        "ws:// at a WebRTC-only hub",
        lambda h, t: ["fetch", "ws://" + _host_port(h.urls["webrtc-only"]), "a.bin", "-o", str(t / "x")],
        1,
        r"is a webrtc hub, not a ws one: dial http://",
    ),
    Case(
        "--via direct at a WebRTC-only hub",
        lambda h, t: ["fetch", h.urls["webrtc-only"], "a.bin", "-o", str(t / "x"), "--via", "direct"],
        1,
        r"serves WebRTC only \(it runs with --no-direct, or is older\): use --via auto or --via webrtc$",
    ),
    Case(
        "tcp:// at an HTTP hub",
        lambda h, t: ["fetch", "tcp://" + _host_port(h.urls["webrtc"]), "a.bin", "-o", str(t / "x")],
        1,
        r"answered in HTTP: it is not a tcp hub",
    ),
    # -------- the hub refuses (exit 2)
    Case(
        "no such file",
        lambda h, t: ["fetch", h.urls["tcp"], "nope.bin", "-o", str(t / "n")],
        2,
        r"the hub refused 'nope.bin': no such file",
    ),
    Case(
        "path traversal",
        lambda h, t: ["fetch", h.urls["webrtc"], "../etc/passwd", "-o", str(t / "p")],
        2,
        r"contains '\.\.'",
    ),
    Case(
        "uploads are not served",
        lambda h, t: ["fetch", h.urls["tcp"], "inbox/x.bin", "-o", str(t / "u")],
        2,
        r"no such file",
    ),
    *[
        Case(
            f"missing secret over {kind}",
            lambda h, t, kind=kind: ["fetch", h.urls[f"{kind}-secret"], "a.bin", "-o", str(t / "s")],
            2,
            r"(authentication required|requires the shared secret).*--secret",
        )
        for kind in ("tcp", "ws", "webrtc")
    ],
    Case(
        "wrong secret",
        lambda h, t: ["fetch", h.urls["tcp-secret"], "a.bin", "-o", str(t / "s"), "--secret", "nope"],
        2,
        r"the hub refused the connection: .*secret",
    ),
    # -------- nothing there (exit 4, no traceback, not empty)
    # nothing was received, so nothing resumes: no "run the same command again" (issue 32, item 3)
    *[
        Case(
            f"{what} ({scheme})",
            lambda h, t, url=f"{scheme}://{host}:9": ["fetch", url, "a.bin", "-o", str(t / "a.bin")],
            4,
            rf"^rxchannel: cannot reach {scheme}://{re.escape(host)}:9: {why}$",
        )
        for what, host, why in (
            ("nothing listening", "127.0.0.1", r"connection refused \(is the hub running at this address\?\)"),
            (
                "unknown host",
                "nosuchhost.invalid",
                r"unknown host 'nosuchhost\.invalid' \([^)]*\): check the host name in the URL",
            ),
        )
        for scheme in ("tcp", "http", "ws")
    ],
    # -------- local problems (exit 1)
    Case(
        "send a directory",
        lambda h, t: ["send", h.urls["tcp"], str(t)],
        1,
        r"is a directory, and send takes one file: pack it first, e\.g\. tar c .* \| rxchannel send URL - --name",
    ),
    Case(
        "send a missing file (issue 32, item 3)",
        lambda h, t: ["send", h.urls["tcp"], str(t / "missing.txt")],
        1,
        r"^rxchannel: no such file: .*missing\.txt$",
    ),
    # -------- issue 32, item 1: a fetch that fetches nothing is an error; '/' is the whole share
    Case(
        "a directory the hub does not have",
        lambda h, t: ["fetch", h.urls["tcp"], "nosuchdir/", "-o", str(t / "out")],
        2,
        r"^rxchannel: the hub has no files under 'nosuchdir/', so nothing was fetched "
        r"\(check the name with 'rxchannel ls URL'; add --allow-empty if an empty directory is a success\)$",
    ),
    *[
        Case(
            f"the whole share as {path!r} without -o",
            lambda h, t, path=path: ["fetch", h.urls["tcp"], path],
            1,
            r"is the hub's whole share: say which directory to fetch it into with -o DIR/",
        )
        for path in ("/", ".", "./")
    ],
    # -------- issue 32, item 2: -o creates at most the directory named; a directory needs its '/'
    Case(
        "-o into a directory that does not exist",
        lambda h, t: ["fetch", h.urls["tcp"], "a.bin", "-o", str(t / "missing" / "a.bin")],
        1,
        r"^rxchannel: .*/missing does not exist, so .*/missing/a\.bin cannot be written there: create it first, "
        r"or add --parents to create it$",
    ),
    Case(
        "-o DIR/ two levels down",
        lambda h, t: ["fetch", h.urls["tcp"], "a.bin", "-o", str(t / "m1" / "m2") + "/"],
        1,
        r"/m1 does not exist, so .*/m1/m2/ cannot be written there: .*--parents",
    ),
    Case(
        "a directory fetch two levels down",
        lambda h, t: ["fetch", h.urls["tcp"], "sub/", "-o", str(t / "m1" / "m2")],
        1,
        r"/m1 does not exist, so .*/m1/m2 cannot be written there: .*--parents",
    ),
    Case(
        "a directory named without its '/'",
        lambda h, t: ["fetch", h.urls["tcp"], "sub", "-o", str(t / "sub")],
        2,
        r"^rxchannel: the hub refused 'sub': 'sub' is a directory, not a file: name it 'sub/' \(with the '/'\) "
        r"to fetch the files in it$",
    ),
    # -------- issue 32, item 3: advice that fits the situation
    *[
        Case(
            f"a --host that is not this machine's{extra}",
            lambda h, t, args=args: ["serve", str(h.root), "--host", "256.1.1.1", *args],
            1,
            r"^rxchannel: cannot listen on 256\.1\.1\.1:8765: '256\.1\.1\.1' is not an address of this machine: "
            r"give --host one of its addresses \(0\.0\.0\.0 for every interface, 127\.0\.0\.1 for this machine only\)$",
        )
        for extra, args in (("", ()), (", one process", ("--processes", "1")), (", tcp", ("--transport", "tcp")))
    ],
    # -------- issue 32, item 4: an inbox inside ROOT is refused unless asked for
    Case(
        "an inbox inside ROOT",
        lambda h, t: ["serve", str(h.root), "--port", "0", "--inbox", str(h.root / "inbox")],
        1,
        r"^rxchannel: --inbox .*/inbox is inside ROOT, so every upload would be listed and served to everyone who "
        r"reaches this hub: choose an inbox outside .*, or add --inbox-public if that is what you want$",
    ),
    Case(
        "ROOT inside the inbox",
        lambda h, t: ["serve", str(h.root), "--port", "0", "--inbox", str(h.root.parent)],
        1,
        r"--inbox .* is around ROOT \(ROOT is inside it\), so every upload would be listed .*--inbox-public",
    ),
    # -------- issue 32, item 8: names that are not UTF-8, and error lines prefixed once
    Case(
        "a PATH that is not UTF-8",
        lambda h, t: ["fetch", h.urls["tcp"], "caf\udce9.bin", "-o", str(t / "c")],
        1,
        r"^rxchannel: argument PATH: 'caf\\xe9\.bin' is not valid UTF-8, and names on a hub are UTF-8 text: "
        r"check the name's encoding \('rxchannel ls URL' shows the hub's names\) \(see 'rxchannel fetch --help'\)$",
    ),
    Case(
        "an inbox name that is not UTF-8",
        lambda h, t: ["send", h.urls["tcp"], str(h.root / "log.txt"), "--name", "\udcff"],
        1,
        r"^rxchannel: argument --name: '\\xff' is not valid UTF-8, and inbox names on a hub are UTF-8 text",
    ),
    Case(
        "an unknown option",
        lambda h, t: ["fetch", h.urls["tcp"], "a.bin", "--bogus"],
        1,
        r"^rxchannel: unrecognized arguments: --bogus \(see 'rxchannel --help'\)$",
    ),
    Case(
        "a missing argument",
        lambda h, t: ["fetch", h.urls["tcp"]],
        1,
        r"^rxchannel: the following arguments are required: PATH \(see 'rxchannel fetch --help'\)$",
    ),
    Case(
        "directory fetch into a file",
        lambda h, t: ["fetch", h.urls["tcp"], "d/", "-o", str(h.root / "a.bin")],
        1,
        r"is a file: a directory fetch needs a directory",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_mistake_gets_its_exit_code_and_a_message(
    case: Case, hubs: Hubs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(case.argv(hubs, tmp_path)) == case.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rxchannel:")]
    assert len(lines) == 1, err
    assert re.search(case.message, lines[0]), lines[0]
    assert not lines[0].startswith("rxchannel: rxchannel"), "the prefix is there once"
    if case.code != 130:
        assert "run the same command again" not in lines[0], "nothing was received: nothing resumes"
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.part")), "a refused fetch leaves no .part behind"


def test_a_missing_secret_is_reported_the_same_way_every_time(hubs: Hubs, tmp_path: Path) -> None:
    """The refusal raced the close on tcp/ws hubs: sometimes exit 2, sometimes 'connection closed'."""
    for kind in ("tcp", "ws"):
        for _ in range(8):
            done = subprocess.run(
                [*RX, "fetch", hubs.urls[f"{kind}-secret"], "a.bin", "-o", str(tmp_path / "s")],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 2, done.stderr
            assert "authentication required" in done.stderr


def test_busy_port(hubs: Hubs, capsys: pytest.CaptureFixture[str]) -> None:
    for port in _busy_port():
        assert main(["serve", str(hubs.root), "--port", str(port)]) == 1
    assert re.search(
        r"cannot listen on 127\.0\.0\.1:\d+: .*address already in use; choose another --port", capsys.readouterr().err
    )


def _proven(transport: str, host: str, port: int) -> socket.socket:
    """A connection that has sent its SETUP (over a WebSocket for an HTTP hub), given time to be read."""
    from rxchannel.core import prefix
    from tests.hostile.flood import SETUP, upgrade, ws_frame

    sock = socket.create_connection((host, port))
    if transport == "tcp":
        sock.sendall(prefix(SETUP) + SETUP)
    else:
        sock.sendall(upgrade())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        sock.sendall(ws_frame(SETUP))
    time.sleep(0.5)
    return sock


def test_a_hub_at_its_connection_cap_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    make_file(root / "a.bin", 10, seed=1)
    for transport in ("tcp", "ws", "webrtc"):
        # one process: the cap is that process's (with several, each has its share)
        proc, url = _start(root, "--transport", transport, "--max-connections", "8", "--processes", "1")
        try:
            host, port = _host_port(url).rsplit(":", 1)
            # holds this address's only slot, proven by its SETUP: a silent one would make room (issue 26)
            with _proven(transport, host, int(port)):
                assert main(["fetch", url, "a.bin", "-o", str(tmp_path / "a.bin")]) in (2, 4)
            err = capsys.readouterr().err
            assert "the hub is busy: 1 " in err and "(limit 1 per address); try again later" in err, err
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


def test_json_failures_print_one_json_line(hubs: Hubs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", hubs.urls["tcp"], "nope.bin", "-o", str(tmp_path / "n"), "--json"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert json.loads(out[0]) == {"error": "the hub refused 'nope.bin': no such file: 'nope.bin'", "exit": 2}
    assert main(["fetch", hubs.urls["tcp"], "a.bin", "--window", "abc", "--json"]) == 1  # usage errors too
    assert json.loads(capsys.readouterr().out)["exit"] == 1


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    import rxchannel
    from rxchannel.cli import build_parser

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rxchannel {rxchannel.__version__}"
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        if name == "bench":
            continue  # its options are the benchmarks' own (python -m benchmarks --help)
        missing = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not missing, f"{name}: options without help text: {missing}"
        assert main([name, "--help"]) == 0
        assert "usage: rxchannel " + name in capsys.readouterr().out


def test_bench_outside_a_checkout_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bench"]) == 1
    assert "runs the benchmarks of a source checkout" in capsys.readouterr().err


def test_aiostream_without_the_extra_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['aiostream'] = None\nimport rxchannel.aiostream"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "needs the aiostream package" in done.stderr and "pip install aiostream" in done.stderr


# ------------------------------------------------------------------ a lying hub (issue 11, cases 12, 14, 16, 18)


def _json_metadata(raw: bytes) -> bytes:
    return encode_composite([("application/json", raw)])


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_case_18_a_hubs_text_cannot_drive_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = "\x1b[2J\x1b[H\rx.bin: 100 bytes, sha256 verified\x07\u202e"

    def answer(sid: int, _req: RequestFrame) -> list[bytes]:
        return [encode_frame(ErrorFrame(stream_id=sid, code=ErrorCode.REJECTED, message=evil))]

    with lying_hub(answer) as hub:
        code, err = _run(["fetch", hub.url, "x.bin", "-o", str(tmp_path / "x.bin")], capsys)
    assert code == 2
    assert not any(ch in err for ch in "\x1b\x07\r\u202e"), repr(err)
    assert "\\x1b[2J" in err and "\\u202e" in err  # shown, escaped


def test_case_16_a_hub_ignoring_credit_is_an_integrity_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def answer(sid: int, req: RequestFrame) -> list[bytes]:
        first = PayloadFrame(stream_id=sid, data=b"x" * 10, metadata=_json_metadata(b'{"size": 100, "offset": 0}'))
        rest = [PayloadFrame(stream_id=sid, data=b"x" * 10) for _ in range(req.initial_n + 3)]
        return [encode_frame(f) for f in (first, *rest)]

    with lying_hub(answer) as hub:
        code, err = _run(["fetch", hub.url, "x.bin", "-o", str(tmp_path / "x.bin"), "--window", "2"], capsys)
    assert code == 3, err
    assert "broke the protocol" in err and "nothing was accepted as complete" in err
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("raw", [b'{"size": 1e999, "offset": 0}', b'{"size": 10, "offset": 1e999}', b'{"size": -1}'])
def test_case_14_absurd_numbers_from_a_hub_are_refused(
    raw: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def answer(sid: int, _req: RequestFrame) -> list[bytes]:
        return [encode_frame(PayloadFrame(stream_id=sid, data=b"x", metadata=_json_metadata(raw), complete=True))]

    with lying_hub(answer) as hub:
        code, err = _run(["fetch", hub.url, "x.bin", "-o", str(tmp_path / "x.bin")], capsys)
    assert code == 3, err
    assert "impossible" in err
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "x.bin.part").exists()


@pytest.mark.parametrize(
    "listing", [b'[{"path": "a", "size": 1e999}]', b'{"path": "a"}', b"[" * 100_000, b'[{"path": 7, "size": 1}]']
)
def test_case_14_absurd_listings_are_refused(listing: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    def answer(sid: int, _req: RequestFrame) -> list[bytes]:
        return [encode_frame(PayloadFrame(stream_id=sid, data=listing, complete=True))]

    with lying_hub(answer) as hub:
        code, err = _run(["ls", hub.url], capsys)
    assert code == 3, err
    assert "listing" in err or "impossible entry" in err


def test_case_15_a_hub_sending_more_than_it_announced_leaves_a_corrupt_file_not_a_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def answer(sid: int, _req: RequestFrame) -> list[bytes]:
        first = PayloadFrame(stream_id=sid, data=b"x" * 10, metadata=_json_metadata(b'{"size": 10, "offset": 0}'))
        return [encode_frame(first), encode_frame(PayloadFrame(stream_id=sid, data=b"y" * 10, complete=True))]

    with lying_hub(answer) as hub:
        code, err = _run(["fetch", hub.url, "x.bin", "-o", str(tmp_path / "x.bin")], capsys)
    assert code == 3 and "received 20 bytes for a file announced as 10" in err
    assert (tmp_path / "x.bin.corrupt").exists()
    assert not (tmp_path / "x.bin.part").exists() and not (tmp_path / "x.bin").exists()


def test_case_12_a_silent_hub_times_out_with_exit_4_and_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with lying_hub(None) as hub:
        code, err = _run(
            ["fetch", hub.url, "x.bin", "-o", str(tmp_path / "x"), "--keepalive", "0.2", "--max-lifetime", "1"], capsys
        )
        assert code == 4, err
        assert re.search(r"rxchannel: .*\w.*(silent|no frame|keepalive|lifetime)", err), err
        port = hub.url.rsplit(":", 1)[1]
        code, err = _run(["fetch", f"ws://127.0.0.1:{port}", "x.bin", "--connect-timeout", "1"], capsys)
        assert code == 4 and "did not answer the WebSocket handshake within 1 s" in err, err
        code, err = _run(["fetch", f"http://127.0.0.1:{port}", "x.bin", "--connect-timeout", "1"], capsys)
        assert code == 4 and re.search(r"did not answer within 1 s", err), err


# ------------------------------------------------------------------ any argv


ARGS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "serve",
                "fetch",
                "send",
                "ls",
                "demo",
                "--port",
                "--window",
                "-o",
                "--json",
                "--force",
                "--secret",
                "--ice-server",
                "--max-size",
                "--chunk-size",
                "tcp://127.0.0.1:9",
                "http://127.0.0.1:9/x",
                "ws://[::1",
                "auto",
                "0",
                "-1",
                "1e999",
                "a.bin",
                "dir/",
                "",
                "\x00",
                "--help",
            ]
        ),
        st.text(max_size=12),
    ),
    max_size=7,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGS)
def test_random_argv_never_raises(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if argv[:1] in (["serve"], ["demo"]) and "--help" not in argv:
        argv = [*argv, "--port", "-1"]  # never actually start a hub or a demo here: stop at validation
    code = main(argv)
    assert isinstance(code, int) and 0 <= code <= 130


def test_a_hub_with_no_direct_path_is_fetched_over_webrtc_and_the_path_said(
    hubs: Hubs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--via auto (the default) takes the direct path where the hub offers one and WebRTC
    where it runs with --no-direct; --json says which, and on which stack."""
    for name, path in (("webrtc", "direct"), ("webrtc-only", "webrtc-host")):
        out = tmp_path / f"{name}.bin"
        code = main(["fetch", hubs.urls[name], "a.bin", "-o", str(out), "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        summary = json.loads(captured.out)
        assert summary["path"] == path and out.read_bytes() == (hubs.root / "a.bin").read_bytes(), summary
        if path != "direct":
            assert summary["stack"] == "aiortc", "loopback: libwebrtc gathers no candidates there"
