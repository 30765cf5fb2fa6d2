"""``rxchannel demo``: a hub process and this process as its worker, a generated file, a summary."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from rxchannel.files import sha256_file

from .commands import cmd_fetch
from .errors import fail
from .loops import run as run_on_loop
from .parser import build_parser
from .units import peak_rss_mb

__all__ = ["cmd_demo"]


_HOW = {
    "webrtc": "WebRTC, loopback ICE",
    "tcp": "TCP",
    "ws": "WebSocket",
}
_OVER = {"webrtc": "a WebRTC DataChannel", "tcp": "TCP", "ws": "a WebSocket"}


def _quiet(transport: str) -> list[str]:
    # one hub process: one worker needs no more, and its memory is then the hub's
    return ["--transport", transport, "--log-level", "warning", "--processes", "1"]


def cmd_demo(args: argparse.Namespace) -> int:
    size = args.size
    with tempfile.TemporaryDirectory(prefix="rxchannel-demo-") as tmp:
        root, out = Path(tmp, "hub"), Path(tmp, "worker", "demo.bin")
        root.mkdir()
        out.parent.mkdir()
        source = root / "demo.bin"
        with open(source, "wb") as handle:
            left = size
            while left:
                block = os.urandom(min(left, 1 << 20))
                handle.write(block)
                left -= len(block)
        print(f"demo: generated {size} bytes; starting a hub process on 127.0.0.1 ({_HOW[args.transport]})")
        hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rxchannel",
                "serve",
                str(root),
                "--port",
                "0",
                "--loop",
                args.loop,
                *_quiet(args.transport),
                *(["--webrtc-stack", args.webrtc_stack] if args.webrtc_stack else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert hub.stdout is not None
            url = hub.stdout.readline().strip()
            if not url:
                return fail("the hub process did not start", 1)
            print(f"demo: hub at {url}; this process is the worker")
            fetch_args = build_parser().parse_args(
                [
                    "fetch",
                    url,
                    "demo.bin",
                    "-o",
                    str(out),
                    "--window",
                    str(args.window),
                    "--no-resume",
                    "--json",
                    "--progress",
                    "--loop",
                    args.loop,
                    "--via",
                    args.via,
                    *(["--webrtc-stack", args.webrtc_stack] if args.webrtc_stack else []),
                ]
            )
            with contextlib.redirect_stdout(_Capture()) as captured:
                code = run_on_loop(cmd_fetch(fetch_args), args.loop)
            if code != 0:
                return code
            summary = json.loads(captured.text)
            hub_rss = peak_rss_mb(hub.pid)
        finally:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(timeout=10)
            except subprocess.TimeoutExpired:
                hub.kill()
        verified = sha256_file(out) == sha256_file(source) == summary["sha256"]
        over = _OVER[args.transport] if summary["path"] != "direct" or args.transport != "webrtc" else "a WebSocket"
        stack = f", stack {summary['stack']}" if summary["stack"] else ""
        print(
            f"demo: {summary['bytes']} bytes over {over} (path {summary['path']}{stack}) in {summary['seconds']} s "
            f"({summary['mb_per_s']} MB/s)\n"
            f"demo: peak RSS hub {hub_rss:.0f} MiB, worker {summary['peak_rss_mb']:.0f} MiB\n"
            f"demo: sha256 {summary['sha256']} {'verified' if verified else 'MISMATCH'}"
        )
        return 0 if verified else 3


class _Capture:
    """Collects what the fetch command prints (its JSON summary)."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass
