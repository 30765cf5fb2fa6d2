"""Values of command-line options, checked as they are parsed (argparse ``type=`` functions).

Each refuses what cannot work with a message that says what the option accepts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .units import parse_size

__all__ = ["CHUNK", "PORT", "SIZE", "checked", "count", "positive_float", "positive_int", "seconds", "size"]


def checked(what: str, parse: Callable[[str], Any], check: Callable[[Any], bool], accepts: str) -> Any:
    """An argparse type: ``parse`` the text, refuse it unless ``check``; messages say it ``accepts``."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}: use {accepts}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: use {accepts}")
        return value

    convert.__name__ = what  # argparse names the type in some messages
    return convert


def positive_int(what: str = "a number") -> Any:
    """An argparse type for a count of at least 1."""
    return checked(what, int, lambda v: v > 0, "a whole number of at least 1")


def positive_float(what: str = "a number", unit: str = "seconds") -> Any:
    """An argparse type for a positive (finite) amount of ``unit``."""
    return checked(what, float, lambda v: 0 < v < 1e9, f"a positive number of {unit}")


def seconds(what: str, default: float) -> dict[str, Any]:
    """``add_argument``'s keywords for an option taking a positive number of seconds (``what`` names it)."""
    return {"type": positive_float(what), "default": default, "metavar": "SECONDS"}


def count(what: str, default: int, metavar: str = "N") -> dict[str, Any]:
    """``add_argument``'s keywords for an option taking a whole number of at least 1 (``what`` names it)."""
    return {"type": positive_int(what), "default": default, "metavar": metavar}


PORT = checked("a port", int, lambda v: 0 <= v <= 65535, "0..65535 (0 picks a free port)")
SIZE = checked("a size", parse_size, lambda v: v > 0, "bytes, or a size such as 64KiB, 32MiB, 1GiB")
CHUNK = checked("a chunk size", parse_size, lambda v: 1024 <= v <= 1 << 24, "1KiB..16MiB, e.g. 64KiB")


def size(default: int | None, kind: Any = SIZE) -> dict[str, Any]:
    """``add_argument``'s keywords for an option taking a size in bytes (``kind``: which sizes it accepts)."""
    return {"type": kind, "default": default}
