"""What the benchmarks read from the processes they start (hubs, senders, workers)."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def first_line(proc: subprocess.Popen[str]) -> str:
    """The first line ``proc`` prints (a hub's URL, a sender's address), stripped."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def json_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The first JSON object ``proc`` prints on a line of its own (its result)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"{proc.args} printed no result (exit {proc.wait()})")
