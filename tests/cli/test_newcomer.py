"""A new user's second pass (issue 32): no exit 0 on nothing, no surprise writes, advice that
fits the situation, a hub log that says what happened. The mistakes that fit one line of
``test_messages.CASES`` are there; these need more than one command, a hub of their own, or
a real process (Ctrl-C during the imports, a firewall in a network namespace).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxchannel.cli import main
from rxchannel.files import sha256_file
from tests.support import RX, make_file, serve_process, stop_process


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("newcomer")
    root = tmp / "root"
    make_file(root / "a.bin", 50_000, seed=1)
    make_file(root / "sub" / "x.bin", 3000, seed=2)
    make_file(root / "sub" / "deeper" / "y.txt", 12, seed=3)
    (root / "empty").mkdir()
    make_file(tmp / "secret.txt", 10, seed=4)
    (root / "outside.txt").symlink_to(tmp / "secret.txt")
    return root


@pytest.fixture(scope="module")
def url(share: Path) -> Iterator[str]:
    proc, url = serve_process(share, "--transport", "tcp", "--log-level", "warning")
    yield url
    stop_process(proc)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RX, *argv], capture_output=True, text=True, timeout=120)


def _one_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if line.startswith("rxchannel:")]
    return line


# ------------------------------------------------------------------ item 1: nothing fetched is not a success


@pytest.mark.parametrize("path", ["/", "", ".", "./"])
def test_the_whole_share_is_fetched_with_slash_dot_or_nothing(url: str, share: Path, tmp_path: Path, path: str) -> None:
    out = tmp_path / "copy"
    done = run("fetch", url, path, "-o", f"{out}/", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["files"] == 3
    for name in ("a.bin", "sub/x.bin", "sub/deeper/y.txt"):
        assert sha256_file(out / name) == sha256_file(share / name)
    assert not (out / "outside.txt").exists(), "a symlink leaving the root is never fetched"
    assert "left out 1 name(s) it cannot serve (a symlink leading outside the hub's root)" in done.stderr


def test_an_empty_directory_fails_unless_allowed(url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    refused = run("fetch", url, "empty/", "-o", str(out))
    assert refused.returncode == 2
    assert re.search(r"^rxchannel: the hub has no files under 'empty/', so nothing was fetched", refused.stderr)
    assert not out.exists(), "nothing fetched, nothing written"
    allowed = run("fetch", url, "empty/", "-o", str(out), "--allow-empty", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["files"] == 0 and out.is_dir(), "what was asked for: the directory, empty"


# ------------------------------------------------------------------ item 2: no surprise writes


def test_parents_are_created_only_when_asked(url: str, share: Path, tmp_path: Path) -> None:
    target = tmp_path / "p1" / "p2" / "a.bin"
    refused = run("fetch", url, "a.bin", "-o", str(target))
    assert refused.returncode == 1 and "add --parents" in refused.stderr
    assert not (tmp_path / "p1").exists()
    done = run("fetch", url, "a.bin", "-o", str(target), "--parents")
    assert done.returncode == 0, done.stderr
    assert sha256_file(target) == sha256_file(share / "a.bin")
    named = run("fetch", url, "a.bin", "-o", f"{tmp_path / 'new'}/")  # the one directory named: created
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "new" / "a.bin").is_file()


# ------------------------------------------------------------------ item 3: advice that fits


def test_ctrl_c_says_what_resumes_only_when_something_was_received(url: str, tmp_path: Path) -> None:
    """Interrupted while dialing a hub that never answers: nothing received, nothing to resume."""
    with socket_that_never_answers() as port:
        proc = subprocess.Popen(
            [*RX, "fetch", f"tcp://127.0.0.1:{port}", "a.bin", "-o", str(tmp_path / "a.bin")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # past the imports, waiting for the hub's answer
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _one_line(err) == "rxchannel: interrupted", err


class socket_that_never_answers:  # noqa: N801 - used as a context manager, like a function
    """A listening TCP socket that accepts (the kernel does) and never says a word."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.45])
def test_ctrl_c_during_the_imports_is_an_interruption_not_a_traceback(delay: float, tmp_path: Path) -> None:
    """The first 0.3 s of ``rxchannel`` are imports (aiohttp, aiortc, rich): a Ctrl-C there
    ends the command like any other (exit 130, one line), never with a traceback."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("rxchannel")), "fetch", "tcp://127.0.0.1:9", "a.bin"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # interrupted (130), or done before the signal came (4: nothing listens at port 9; -SIGINT: it
    # came while the interpreter was exiting, after Python gave SIGINT back to the system)
    assert proc.returncode in (130, 4, -signal.SIGINT), err
    if proc.returncode == 130:
        assert err == "rxchannel: interrupted\n"


SANDBOXED = """
import errno, runpy, socket, sys

def connect(self, address):  # what a sandbox (seccomp, gVisor) or a firewall rule answers connect() with
    raise PermissionError(errno.EPERM, "Operation not permitted")

socket.socket.connect = connect
sys.argv = ["rxchannel", *sys.argv[1:]]
runpy.run_module("rxchannel", run_name="__main__")
"""


@pytest.mark.parametrize(
    "url", ["https://192.0.2.7", "http://192.0.2.7:8765", "tcp://192.0.2.7:8765", "ws://192.0.2.7:8765"]
)
def test_a_connection_this_machine_forbids_says_so(url: str, tmp_path: Path) -> None:
    """``connect()`` failing with EPERM is this machine's sandbox or firewall, before anything
    left it (an https:// URL met that in a sandbox): the message says so, not "operation not
    permitted", and not "run it again". The child process refuses every connect() as such
    a sandbox would (on asyncio's loop, whose sockets go through socket.connect)."""
    script = tmp_path / "sandboxed.py"
    script.write_text(SANDBOXED)
    done = subprocess.run(
        [sys.executable, str(script), "fetch", url, "a.bin", "-o", str(tmp_path / "a.bin"), "--loop", "asyncio"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert done.returncode == 4, done.stderr
    line = _one_line(done.stderr)
    assert "operation not permitted" not in line.lower() and "run the same command again" not in line
    host = re.escape(url.split("//")[1].split(":")[0])
    assert re.search(
        rf"cannot reach {re.escape(url)}: this machine does not allow connecting to {host} "
        r"\(a local firewall or sandbox blocked it before anything was sent\)$",
        line,
    ), line


# ------------------------------------------------------------------ item 4: the inbox and the root


def test_an_inbox_inside_root_is_served_only_when_that_is_meant(share: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "a.bin", 10, seed=1)
    upload = tmp_path / "up.bin"
    make_file(upload, 100, seed=2)
    assert main(["serve", str(root), "--port", "0", "--inbox", str(root / "inbox")]) == 1
    proc, hub = serve_process(root, "--transport", "tcp", "--inbox", str(root / "inbox"), "--inbox-public")
    try:
        assert run("send", hub, str(upload)).returncode == 0
        listed = run("ls", hub)
        assert "inbox/up.bin" in listed.stdout, "meant: every upload is listed and served"
    finally:
        stop_process(proc)


def test_ls_notes_a_symlink_that_leaves_the_root(url: str) -> None:
    done = run("ls", url)
    assert done.returncode == 0
    assert "outside.txt" not in done.stdout
    assert "rxchannel: the hub left out 1 name(s) it cannot serve (a symlink leading outside the hub's root)" in (
        done.stderr
    )
    assert re.search(r"^3 file\(s\), 51\.8 KiB$", done.stderr, re.MULTILINE), "sizes in KiB, as everywhere"


# ------------------------------------------------------------------ item 5: the hub's log says what happened


@pytest.mark.parametrize("transport", ["tcp", "ws", "webrtc"])
def test_a_worker_that_exits_normally_is_a_normal_close_in_the_log(share: Path, tmp_path: Path, transport: str) -> None:
    proc, hub = serve_process(share, "--transport", transport, "--log-json", "--processes", "1")
    try:
        assert run("fetch", hub, "a.bin", "-o", str(tmp_path / "a.bin")).returncode == 0
        assert run("fetch", hub, "a.bin", "-o", str(tmp_path / "b.bin"), "--no-session-resume").returncode == 0
        assert run("ls", hub).returncode == 0
    finally:
        err = stop_process(proc)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    closes = [e for e in events if e["event"] == "connection.close"]
    assert len(closes) == 3, err
    assert {e["reason"] for e in closes} == {"closed by the peer"}, closes
    assert all(e["level"] == "info" for e in closes)
    assert "CONNECTION_ERROR" not in err


def test_refused_secrets_over_webrtc_and_the_pages_reports_are_in_the_log(share: Path, tmp_path: Path) -> None:
    proc, hub = serve_process(share, "--secret", "s3cret", "--log-json", "--processes", "1")
    try:
        for secret in ([], ["--secret", "wrong"]):
            refused = run("fetch", hub, "a.bin", "-o", str(tmp_path / "a.bin"), "--via", "webrtc", *secret)
            assert refused.returncode == 2, refused.stderr
        _post_report(hub, {"ok": True, "path": "a.bin", "bytes": 50_000, "sha256": "0" * 64, "seconds": 0.5})
        _post_report(hub, {"ok": False, "path": "a.bin", "error": "the browser's storage is full"})
    finally:
        err = stop_process(proc)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    refusals = [e for e in events if e["event"] == "connection.refused"]
    assert len(refusals) == 2 and {e["status"] for e in refusals} == {401}, err
    assert "requires the shared secret" in refusals[0]["reason"] and "wrong shared secret" in refusals[1]["reason"]
    reports = [e for e in events if e["event"] == "report"]
    assert [(r["ok"], r["path"]) for r in reports] == [(True, "a.bin"), (False, "a.bin")], err
    assert reports[0]["bytes"] == 50_000 and reports[1]["error"] == "the browser's storage is full"
    assert "verified: 50000 bytes in 0.50 s" in reports[0]["message"]


def _post_report(hub: str, report: dict[str, object]) -> None:
    """What the page does in job mode: read its token from the page, POST the result."""
    with urllib.request.urlopen(f"{hub}/") as page:
        token = re.search(r'name="rxchannel-report-token" content="([^"]+)"', page.read().decode())
    assert token is not None
    request = urllib.request.Request(
        f"{hub}/report",
        data=json.dumps(report).encode(),
        headers={"Authorization": f"Bearer {token[1]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200


def test_serve_at_log_level_warning_says_nothing_when_all_is_well(share: Path) -> None:
    """What `bench` and `demo` run: no "serving … Ctrl-C to stop" among their results."""
    for processes in ("1", "2"):
        proc, hub = serve_process(share, "--log-level", "warning", "--processes", processes)
        assert hub.startswith("http://")
        assert stop_process(proc) == ""


# ------------------------------------------------------------------ item 6: handled errors are not tracebacks

HOT = """
import asyncio
from reactivex.subject import Subject
import rxchannel as rxc
from rxchannel import reactive


async def main():
    router = rxc.Router()

    @router.channel("ingest")
    async def ingest(request):
        async for reading in request.inbound:
            await asyncio.sleep(0.05)
        yield b"done"

    server = await rxc.serve_tcp(router)
    peer = await rxc.connect_tcp("127.0.0.1", server.port)
    sensor = Subject()  # hot, with no overflow policy: the second reading has no credit
    sink = reactive.remote_sink(peer, "ingest")
    sensor.subscribe(sink)
    try:
        for _ in range(100):
            sensor.on_next(b"x")
            await asyncio.sleep(0)
    except rxc.LocalProtocolError as exc:
        print("handled:", type(exc).__name__)
    try:
        await sink.done
    except rxc.LocalProtocolError:
        print("and sink.done says so too")
    await peer.close()
    await server.close()


asyncio.run(main())
"""


def test_errors_the_application_handled_print_no_traceback(tmp_path: Path) -> None:
    script = tmp_path / "hot.py"
    script.write_text(HOT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["handled: LocalProtocolError", "and sink.done says so too"]
    assert done.stderr == "", "no 'sender for route ... failed' or 'handler for route ... failed' tracebacks"


# ------------------------------------------------------------------ item 8: the help says what applies


def test_serve_help_has_no_dialing_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    serve_help = capsys.readouterr().out
    assert "--ice-timeout" not in serve_help and "--inbox-public" in serve_help
    assert main(["fetch", "--help"]) == 0
    fetch_help = capsys.readouterr().out
    assert "--ice-timeout" in fetch_help and "--allow-empty" in fetch_help and "--parents" in fetch_help


def test_sizes_read_the_same_in_the_cli_and_the_page() -> None:
    from rxchannel.cli.units import format_size
    from rxchannel.web import format_size as page_size

    for size, text in [(512, "512 B"), (1280, "1.3 KiB"), (3 << 20, "3.0 MiB"), (5 << 30, "5.00 GiB")]:
        assert page_size(size) == format_size(size) == text
