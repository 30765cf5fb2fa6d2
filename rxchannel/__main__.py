"""``python -m rxchannel`` is the ``rxchannel`` command."""

from rxchannel.cli import run

run()
