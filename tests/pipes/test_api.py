"""rxchannel.pipes: its public names, and the layers it stays out of."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import rxchannel.pipes


def test_every_public_name_is_exported_and_every_export_is_there() -> None:
    bound = {
        name
        for name, value in vars(rxchannel.pipes).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not hasattr(typing, name)
        and name != "annotations"
    }
    assert set(rxchannel.pipes.__all__) == bound
    assert {"through", "to_writer", "from_reader", "fetch_to", "push_from"} <= bound  # the entry points


def test_pipes_need_neither_reactivex_nor_aiostream() -> None:
    code = "import sys, rxchannel.pipes, rxchannel.aio; print(sorted({'reactivex', 'aiostream'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
