"""Keeping requested names inside a root: refuse absolute paths, ``..`` and escaping symlinks."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from rxchannel.core import ApplicationError, ErrorCode

__all__ = ["PathRefusedError", "resolve_inside"]


class PathRefusedError(ApplicationError):
    """A requested path is not inside the served root (sent to the peer as REJECTED)."""

    def __init__(self, message: str):
        super().__init__(message, code=ErrorCode.REJECTED)


def resolve_inside(root: Path, relative: str) -> Path:
    """The real path of ``relative`` under ``root``, or :class:`PathRefusedError` saying why.

    Refused: empty names, NUL bytes, absolute paths (POSIX or Windows style), any ``..``
    component, and anything that resolves outside ``root`` once symlinks are followed.
    """
    shown = relative[:200]
    if not relative:
        raise PathRefusedError("empty path: name a file under the hub's root")
    if "\x00" in relative:
        raise PathRefusedError(f"path {shown!r} contains a NUL byte")
    if relative.startswith(("/", "\\")) or PureWindowsPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        raise PathRefusedError(f"path {shown!r} is absolute: paths are relative to the hub's root")
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if ".." in parts or ".." in relative.replace("\\", "/").split("/"):
        raise PathRefusedError(f"path {shown!r} contains '..': paths may not leave the hub's root")
    real_root = root.resolve()
    try:
        candidate = (real_root / relative).resolve()
    except (OSError, ValueError, RuntimeError):  # too long, a symlink loop, ...
        raise PathRefusedError(f"path {shown!r} is not a usable file name") from None
    if candidate != real_root and not candidate.is_relative_to(real_root):
        raise PathRefusedError(f"path {shown!r} resolves outside the hub's root (a symlink?)")
    return candidate
