"""nats-py is an optional extra: only rxchannel.nats imports it (issue 28)."""

from __future__ import annotations

import subprocess
import sys


def test_nats_is_imported_only_by_rxchannel_nats() -> None:
    code = (
        "import sys, rxchannel, rxchannel.reactive, rxchannel.operators, rxchannel.aio, rxchannel.files, "
        "rxchannel.cli, rxchannel.runtime, rxchannel.cli.commands, rxchannel.cli.parser; "
        "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", "nats-py must stay behind rxchannel.nats (the [nats] extra)"
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, rxchannel.nats; print('nats.js' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "True"  # the check sees the import when it happens
