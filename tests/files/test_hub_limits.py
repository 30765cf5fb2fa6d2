"""HubLimits: one object for what a hub allows; the CLI's defaults are read from it (and from
HUB_CONNECTION), so a library hub and ``rxchannel serve`` start from the same numbers."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest

from rxchannel.cli.parser import build_parser
from rxchannel.hub import HUB_CONNECTION, Hub, HubLimits
from rxchannel.transports import ListenLimits


def test_serve_takes_its_defaults_from_the_library(tmp_path: Path) -> None:
    args = build_parser().parse_args(["serve", str(tmp_path)])
    limits, listen = HubLimits(), ListenLimits()
    assert (args.chunk_size, args.max_upload, args.max_upload_per_address, args.max_open_files) == (
        limits.chunk_size,
        limits.max_upload,
        limits.max_upload_per_address,
        limits.max_open_files,
    )
    assert (args.keepalive, args.max_lifetime, args.max_streams) == (
        HUB_CONNECTION.keepalive_interval,
        HUB_CONNECTION.max_lifetime,
        HUB_CONNECTION.max_streams,
    )
    assert (args.max_connections, args.max_unfinished) == (listen.max_connections, listen.max_unfinished)


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"max_open_files": -1}, "max_open_files"),
        ({"max_upload_per_address": 0}, "max_upload_per_address"),
        ({"stream_idle": -1.0}, "stream_idle"),
        ({"share_max_lag": 0}, "max_lag"),
    ],
)
def test_a_limit_out_of_range_is_refused_by_name(change: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        HubLimits(**change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=word):
        HubLimits().replace(**change)


def test_the_old_keyword_arguments_still_work_and_warn(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="limits=HubLimits"):
        hub = Hub(tmp_path, chunk_size=1024, max_list=7)
    try:
        assert hub.limits == HubLimits(chunk_size=1024, max_list=7)
    finally:
        hub.close()
    with pytest.raises(TypeError, match="max_lsit"):
        Hub(tmp_path, max_lsit=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hub = Hub(tmp_path, limits=HubLimits(chunk_size=1024))
        hub.close()
    assert dataclasses.is_dataclass(hub.limits) and hub.limits.chunk_size == 1024
