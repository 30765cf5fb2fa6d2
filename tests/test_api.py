"""The public surface and the core's isolation."""

from __future__ import annotations

import subprocess
import sys

import rxchannel
import rxchannel.core


def test_core_imports_only_the_standard_library() -> None:
    code = (
        "import sys, rxchannel.core; "
        "bad = [m for m in ('asyncio', 'aiortc', 'reactivex', 'aiostream', 'aiohttp', 'rich') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"rxchannel.core pulled in: {out.stdout.strip()}"


def test_core_never_reads_the_clock() -> None:
    import pathlib

    for path in pathlib.Path(rxchannel.core.__file__).parent.glob("*.py"):
        text = path.read_text()
        for forbidden in ("import time", "from time", "monotonic(", "datetime.now", "import asyncio"):
            assert forbidden not in text, f"{path.name} uses {forbidden!r}"


def test_exported_names_are_pinned() -> None:
    assert sorted(rxchannel.__all__) == sorted(
        [
            "Adaptive",
            "DEFAULT_WINDOW",
            "ApplicationError",
            "ClosedResourceError",
            "ConnectionConfig",
            "ConnectionLostError",
            "ErrorCode",
            "InboundDemand",
            "LimitRate",
            "LocalProtocolError",
            "Manual",
            "Payload",
            "Peer",
            "RemoteError",
            "RemoteProtocolError",
            "RemoteStream",
            "Request",
            "Role",
            "Router",
            "RxChannelError",
            "Server",
            "SetupRejectedError",
            "StreamCancelledError",
            "Window",
            "connect",
            "connect_tcp",
            "serve",
            "serve_tcp",
        ]
    )
    for name in rxchannel.__all__ + rxchannel.core.__all__:
        assert hasattr(rxchannel, name) or hasattr(rxchannel.core, name), name


def test_only_the_aiostream_facade_imports_aiostream() -> None:
    code = (
        "import sys, rxchannel, rxchannel.reactive, rxchannel.operators, rxchannel.aio, rxchannel.files, "
        "rxchannel.cli, rxchannel.runtime, rxchannel.webrtc.signaling, rxchannel.web; "
        "print('aiostream' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "aiostream (GPL-3.0) must stay behind rxchannel.aiostream"


def test_the_runtime_does_not_import_reactivex() -> None:
    code = "import sys, rxchannel.runtime, rxchannel.files, rxchannel.cli; print('reactivex' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "only the Rx facade may import reactivex"
