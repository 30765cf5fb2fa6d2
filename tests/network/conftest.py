"""Fixtures for tests across network namespaces (helpers: ``tests/netlab.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab import Lab, missing_tools
from tests.support import make_file


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh set of namespaces, removed when the test ends (pass or fail).

    Missing tools fail the test (``make test`` installs them and runs as root): a skip
    here would hide that nothing crossed a network.
    """
    missing = missing_tools()
    if missing:
        pytest.fail(f"network tests need {', '.join(missing)}: run 'make test' as root (it installs coturn, iptables)")
    with Lab() as made:
        yield made


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A hub root with a 3 MiB file, ``f.bin``."""
    root = tmp_path / "root"
    make_file(root / "f.bin", 3 * 1024 * 1024, seed=12)
    return root
