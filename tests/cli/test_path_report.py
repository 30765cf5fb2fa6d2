"""What ``fetch --json`` says of the path and the window it used by default."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import rxchannel as rx
from rxchannel.cli.parser import build_parser
from rxchannel.files import FETCH_WINDOW, sha256_file
from rxchannel.hub import Hub
from rxchannel.runtime import Payload, Request
from tests.support import make_file

RX = [sys.executable, "-m", "rxchannel"]


class RelayedHub(Hub):
    """A hub whose end of the candidate pair is a TURN relay (as behind a symmetric NAT)."""

    async def path_seen(self, request: Request) -> Payload:
        return Payload(json.dumps({"path": "webrtc-relay"}).encode())


async def test_fetch_reports_the_hubs_view_of_the_path_when_it_is_wider(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 300_000, seed=5)
    for hub_class, expected in ((Hub, "webrtc-host"), (RelayedHub, "webrtc-relay")):
        hub = hub_class(root)
        server = await rx.serve(hub.router, transport="webrtc", host="127.0.0.1")
        try:
            out = tmp_path / f"{expected}.bin"
            fetch = await asyncio.create_subprocess_exec(
                *RX, "fetch", server.url, "f.bin", "-o", str(out), "--json", "--via", "webrtc",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(fetch.communicate(), 120)
            assert fetch.returncode == 0, stderr.decode()
            summary = json.loads(stdout)
            assert summary["path"] == expected, summary
            assert summary["sha256"] == sha256_file(out) == sha256_file(root / "f.bin")
        finally:
            await server.close()
            hub.close()


def test_the_cli_fetches_with_the_librarys_default_window() -> None:
    args = build_parser().parse_args(["fetch", "http://127.0.0.1:1", "f.bin"])
    assert args.window == FETCH_WINDOW == 128
