"""``rxchannel serve ROOT --nats URL`` (issue 28): what it refuses, before anything starts. (The
fleet test runs two such hubs for real: tests/nats/test_nats_fleet.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from rxchannel.cli import main
from tests.nats.server import NatsServer, nats_server_missing


def test_serve_refuses_a_nats_url_that_is_not_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path), "--nats", "http://127.0.0.1:4222"]) == 1
    assert "not a NATS URL" in capsys.readouterr().err


def test_serve_with_nats_that_cannot_be_reached_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", str(tmp_path), "--transport", "tcp", "--port", "0", "--nats", "nats://127.0.0.1:1"])
    assert code == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in capsys.readouterr().err


def test_serve_with_nats_without_jetstream_says_how_to_enable_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = nats_server_missing()
    if missing:
        pytest.skip(missing)
    with NatsServer(jetstream=False) as plain:
        code = main(["serve", str(tmp_path), "--transport", "tcp", "--port", "0", "--nats", plain.url])
    assert code == 1
    assert "-js" in capsys.readouterr().err


def test_serve_nats_replicas_reach_jetstream_and_a_refusal_reaches_the_worker(tmp_path: Path) -> None:
    """--nats-replicas 3 against a single server: JetStream cannot make the queue's stream, and the
    worker's channel ends with an ERROR that says why (the hub keeps serving)."""
    import asyncio
    import subprocess
    import sys

    import rxchannel as rx
    from rxchannel.fanout import work

    missing = nats_server_missing()
    if missing:
        pytest.skip(missing)
    with NatsServer() as server:
        cmd = [sys.executable, "-m", "rxchannel", "serve", str(tmp_path), "--transport", "tcp", "--port", "0"]
        hub = subprocess.Popen([*cmd, "--nats", server.url, "--nats-replicas", "3"], stdout=subprocess.PIPE, text=True)
        try:
            assert hub.stdout is not None
            url = hub.stdout.readline().strip()

            async def worker() -> BaseException:
                async with await rx.connect(url) as peer:
                    with pytest.raises(rx.RemoteError) as refused:
                        await work(peer, "queue/jobs", lambda job: None)
                    return refused.value

            error = asyncio.run(worker())
        finally:
            hub.terminate()
            hub.wait(timeout=15)
    assert "queue is not available" in str(error) and "replicas" in str(error)
