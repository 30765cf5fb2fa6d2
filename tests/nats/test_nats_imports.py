"""nats-py is an optional extra: only rxchannel.nats imports it (issue 28)."""

from __future__ import annotations

from tests.fresh_python import loaded_after


def test_nats_is_imported_only_by_rxchannel_nats() -> None:
    everything_else = (
        "rxchannel, rxchannel.reactive, rxchannel.operators, rxchannel.aio, rxchannel.files, "
        "rxchannel.cli, rxchannel.runtime, rxchannel.cli.commands, rxchannel.cli.parser"
    )
    assert loaded_after(everything_else, "nats") == [], "nats-py must stay behind rxchannel.nats (the [nats] extra)"
    assert loaded_after("rxchannel.nats", "nats.js") == ["nats.js"]  # the check sees the import when it happens
