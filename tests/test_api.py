"""The public surface and the core's isolation."""

from __future__ import annotations

import rxchannel
import rxchannel.core
from tests.fresh_python import loaded_after


def test_core_imports_only_the_standard_library() -> None:
    bad = loaded_after("rxchannel.core", "asyncio", "aiortc", "reactivex", "aiostream", "aiohttp", "rich")
    assert bad == [], f"rxchannel.core pulled in: {','.join(bad)}"


def test_core_never_reads_the_clock() -> None:
    import pathlib

    for path in pathlib.Path(rxchannel.core.__file__).parent.glob("*.py"):
        text = path.read_text()
        for forbidden in ("import time", "from time", "monotonic(", "datetime.now", "import asyncio"):
            assert forbidden not in text, f"{path.name} uses {forbidden!r}"


def test_the_root_names_are_written_once() -> None:
    """``rxchannel.__all__`` is the one list: the lazy loader resolves every name in it from
    the layer that exports it, and the TYPE_CHECKING imports (for type checkers) name the same."""
    import ast
    import importlib
    import pathlib

    tree = ast.parse(pathlib.Path(rxchannel.__file__).read_text())
    typed = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for sub in node.body
        if isinstance(sub, ast.ImportFrom)
        for alias in sub.names
    }
    assert typed == set(rxchannel.__all__)
    assert len(set(rxchannel.__all__)) == len(rxchannel.__all__)
    for name in rxchannel.__all__:
        value = getattr(rxchannel, name)
        layers = [m for m in ("rxchannel.core", "rxchannel.runtime") if name in importlib.import_module(m).__all__]
        assert layers, f"{name} is exported by no layer"
        assert getattr(importlib.import_module(layers[0]), name) is value
    try:
        rxchannel.NoSuchName  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")


def _public_exceptions() -> list[type[BaseException]]:
    import importlib
    import inspect
    import pathlib

    root = pathlib.Path(rxchannel.__file__).parent
    found: dict[str, type[BaseException]] = {}
    for path in sorted(root.rglob("*.py")):
        module_name = ".".join(("rxchannel", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        if module_name in ("rxchannel.aiostream", "rxchannel.__main__") or ".testing" in module_name:
            continue  # the optional GPL facade; the test kit's own failures are AssertionErrors on purpose
        if module_name.startswith("rxchannel.webrtc.native") or module_name.startswith("rxchannel.nats"):
            continue  # optional extras (covered where they are installed: tests/webrtc, tests/nats)
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and not name.startswith("_")
                and value.__module__.startswith("rxchannel")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_error_rxchannel_raises_on_purpose_is_an_rxchannel_error() -> None:
    """One root to catch: a caller's ``except RxChannelError`` sees every refusal and failure
    (the CLI's usage errors and the native stack's aiortc-compatible InvalidStateError aside)."""
    allowed = {"rxchannel.cli.errors.UsageError", "rxchannel.webrtc.native_channel.InvalidStateError"}
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _public_exceptions()
        if not issubclass(cls, rxchannel.RxChannelError) and f"{cls.__module__}.{cls.__qualname__}" not in allowed
    ]
    assert outside == []
    assert len(_public_exceptions()) > 25  # the walk found the tree's errors


def test_refusals_carry_their_status_under_one_class() -> None:
    from rxchannel.transports.websocket import WebSocketRefusedError
    from rxchannel.webrtc.offerer import WebRtcConnectError
    from rxchannel.webrtc.rendezvous import RendezvousRefusedError
    from rxchannel.webrtc.signaling import DirectRefusedError

    for cls in (WebSocketRefusedError, WebRtcConnectError, RendezvousRefusedError, DirectRefusedError):
        error = cls("refused", 401)
        assert isinstance(error, rxchannel.ConnectFailedError) and isinstance(error, ConnectionError)
        assert error.status == 401


def test_old_names_warn_and_still_work() -> None:
    import warnings

    from rxchannel import aio

    for old, new in (("stream", "request_stream"), ("channel", "request_channel")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert getattr(aio, old) is getattr(aio, new)
        assert [w.category for w in caught] == [DeprecationWarning]
        assert new in str(caught[0].message)


def test_limit_rate_is_a_window_policy_class() -> None:
    import pytest

    policy = rxchannel.LimitRate(64, 16)
    assert isinstance(policy, rxchannel.Window) and (policy.size, policy.refill) == (64, 48)
    assert (policy.high, policy.low) == (64, 16)
    assert repr(policy) == "LimitRate(high=64, low=16)"
    with pytest.raises(ValueError, match="0 <= low < high"):
        rxchannel.LimitRate(8, 8)


def test_only_the_aiostream_facade_imports_aiostream() -> None:
    everything_else = (
        "rxchannel, rxchannel.reactive, rxchannel.operators, rxchannel.aio, rxchannel.files, "
        "rxchannel.cli, rxchannel.runtime, rxchannel.webrtc.signaling, rxchannel.web"
    )
    assert loaded_after(everything_else, "aiostream") == [], "aiostream (GPL-3.0) must stay behind rxchannel.aiostream"


def test_the_runtime_does_not_import_reactivex() -> None:
    assert loaded_after("rxchannel.runtime, rxchannel.files, rxchannel.cli", "reactivex") == [], (
        "only the Rx facade may import reactivex"
    )
