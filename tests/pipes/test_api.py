"""rxchannel.pipes: its public names, and the layers it stays out of."""

from __future__ import annotations

import subprocess
import sys

import rxchannel.pipes


def test_exported_names_are_pinned() -> None:
    assert sorted(rxchannel.pipes.__all__) == [
        "PipeClosedError",
        "PipeResult",
        "ProcessFailedError",
        "Through",
        "Writer",
        "check_argv",
        "drain",
        "fetch_to",
        "from_reader",
        "push_from",
        "stdin_source",
        "stdout_writer",
        "through",
        "to_writer",
    ]
    for name in rxchannel.pipes.__all__:
        assert hasattr(rxchannel.pipes, name), name


def test_pipes_need_neither_reactivex_nor_aiostream() -> None:
    code = "import sys, rxchannel.pipes, rxchannel.aio; print(sorted({'reactivex', 'aiostream'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
