"""Sizes people type, and the memory a process used."""

from __future__ import annotations

import resource

__all__ = ["format_size", "parse_size", "peak_rss_mb"]


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory of this process (or ``pid``, from /proc) in MiB (2^20 bytes; the
    ``--json`` field keeps its name ``peak_rss_mb``)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def parse_size(text: str) -> int:
    """``32MiB``, ``512KiB``, ``1GiB``, ``1000`` -> bytes."""
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "b": 1}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)]) * factor)
    return int(lowered)


def format_size(size: int) -> str:
    """``1536`` -> ``1.5 KiB``: binary units, rounded as the worker page rounds them, so that the
    CLI and the page show one size the same way (bytes below 1 KiB as ``512 B``)."""
    from rxchannel.web import format_size as page_size

    return page_size(size)
