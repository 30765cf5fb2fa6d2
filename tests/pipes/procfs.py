"""What the kernel says about a process: its I/O counters, its memory, a pipe's capacity.

A hub's :class:`~rxchannel.files.FileSource` reads with ``pread``/``preadv``, which never
move the file's offset: ``/proc/PID/fdinfo/FD`` says ``pos: 0`` throughout a transfer. How
far a process has read is its ``rchar`` in ``/proc/PID/io`` (every byte its read-like
system calls returned: the file's, and the few its sockets bring in); ``wchar`` is what it
wrote.
"""

from __future__ import annotations

import fcntl
import os

#: Linux's F_GETPIPE_SZ (the fcntl module has it from Python 3.10 on Linux)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def io(pid: int) -> dict[str, int]:
    """``/proc/PID/io``: ``rchar``, ``wchar``, ``syscr``, ..."""
    with open(f"/proc/{pid}/io") as handle:
        return {key: int(value) for key, value in (line.split(":") for line in handle if ":" in line)}


def rss(pid: int) -> int:
    """Resident memory of ``pid`` now, in bytes (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def pipe_size(fd: int) -> int:
    """The capacity of the pipe ``fd`` is an end of (64 KiB by default on Linux)."""
    return int(fcntl.fcntl(fd, F_GETPIPE_SZ))


def open_fds(pid: int, name: str) -> list[int]:
    """The descriptors of ``pid`` open on a file whose path ends in ``name``."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name):
                found.append(int(fd))
        except OSError:
            continue
    return found
