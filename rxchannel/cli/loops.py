"""Which event loop the commands run on: uvloop where it is installed, asyncio's own otherwise.

The library never chooses a loop (an application that embeds rxchannel runs it on whatever
loop it runs); the commands and the benchmarks do, because aiortc's SCTP/DTLS is pure
Python and bound by the loop: uvloop moves a DataChannel about 1.4x as fast, with a third
less CPU per MB (README, Benchmarks). Each command takes ``--loop asyncio|uvloop`` to
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "add_loop_option", "default_loop", "loop_factory", "run"]

T = TypeVar("T")

#: The loops a command can run on.
LOOPS = ("uvloop", "asyncio")


def default_loop() -> str:
    """``uvloop`` when it is installed (Linux, macOS), else ``asyncio``."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of kind ``name``.

    Raises:
        ValueError: an unknown name, or ``uvloop`` asked for where it is not installed.
    """
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ValueError("--loop uvloop: uvloop is not installed here (pip install uvloop; Linux/macOS)") from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise ValueError(f"unknown event loop {name!r}: use one of {', '.join(LOOPS)}")


def run(main: Coroutine[Any, Any, T], loop: str | None = None) -> T:
    """Run ``main`` on a new loop of kind ``loop`` (default: :func:`default_loop`), as ``asyncio.run`` does."""
    try:
        factory = loop_factory(loop or default_loop())
    except ValueError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    """``--loop asyncio|uvloop`` (default: uvloop where installed)."""
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=default_loop(),
        help=f"event loop to run on (default here: {default_loop()}; uvloop where installed)",
    )
