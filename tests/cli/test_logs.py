"""The hub's log (issue 14): one line per connection, transfer, upload and refusal; JSON with
``--log-json``; text from peers made printable."""

from __future__ import annotations

import json
from pathlib import Path

from rxchannel.cli import main
from tests.support import make_file, serve_process, stop_process


def test_json_log_has_one_event_per_connection_transfer_upload_and_refusal(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "a.bin", 100_000, seed=1)
    upload = tmp_path / "up.bin"
    make_file(upload, 1000, seed=2)
    proc, url = serve_process(root, "--transport", "tcp", "--log-json", "--secret", "s")
    try:
        assert main(["fetch", url, "a.bin", "-o", str(tmp_path / "a.bin"), "--secret", "s"]) == 0
        assert main(["fetch", url, "nope\x1b[2J.bin", "-o", str(tmp_path / "n"), "--secret", "s"]) == 2
        assert main(["send", url, str(upload), "--secret", "s"]) == 0
        assert main(["fetch", url, "a.bin", "-o", str(tmp_path / "b"), "--secret", "wrong"]) == 2
    finally:
        err = stop_process(proc)
    lines = [line for line in err.splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "event", "message"} <= e.keys() for e in events)
    kinds = [e["event"] for e in events]
    # the worker with the wrong secret asked for a resumable session, was refused, and tried
    # once more without resumption (a hub that does not resume would accept that); a
    # connection is logged open once its SETUP is accepted, so those two only as refused
    assert kinds.count("connection.open") == 3
    assert kinds.count("connection.close") == 3 and kinds.count("connection.refused") == 2
    assert "session.detached" not in kinds, "a worker that closes on purpose leaves no session behind"
    (transfer,) = [e for e in events if e["event"] == "transfer"]
    assert transfer["path"] == "a.bin" and transfer["bytes"] == 100_000 and transfer["outcome"] == "complete"
    (upload_event,) = [e for e in events if e["event"] == "upload"]
    assert upload_event["path"] == "up.bin" and upload_event["bytes"] == 1000
    (refused,) = [e for e in events if e["event"] == "refused"]
    assert refused["route"] == "files/nope\\x1b[2J.bin" and "no such file" in refused["message"]
    assert "\x1b" not in err  # a peer's text never reaches the operator's terminal raw
    assert "authentication" in next(e for e in events if e["event"] == "connection.refused")["reason"]


def test_text_log_and_level(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "a.bin", 10, seed=1)
    proc, url = serve_process(root, "--transport", "tcp")
    try:
        assert main(["fetch", url, "a.bin", "-o", str(tmp_path / "a.bin")]) == 0
    finally:
        err = stop_process(proc)
    assert any(" info    connection from 127.0.0.1:" in line for line in err.splitlines())
    assert any(" info    sent a.bin to 127.0.0.1:" in line and "(complete)" in line for line in err.splitlines())
    proc, url = serve_process(root, "--transport", "tcp", "--log-level", "warning")
    try:
        assert main(["fetch", url, "a.bin", "-o", str(tmp_path / "b.bin")]) == 0
    finally:
        err = stop_process(proc)
    assert " info " not in err
