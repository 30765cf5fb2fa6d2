"""The JSON both ends of a ``files/<path>`` stream write and read (docs/protocol.md, "Hub routes").

* :class:`FileRequest` — the request data: empty for the whole file, else
  ``{"offset": N, "sha256": "<hex of those N bytes>"}`` to resume and ``"end": M`` for
  the range ``[N, M)``. The requester (:mod:`.transfer`, :mod:`.swarm`) writes it with
  :meth:`FileRequest.to_bytes`, the hub reads it with :meth:`FileRequest.from_bytes`.
* :class:`FileInfo` — the first item's metadata ``{"type": "file", "size", "offset"}``
  (``"end"`` for a range, ``"restart"`` when a resume had to start over), written by
  :class:`~.source.FileSource` and read by :class:`~.sink.FileSink`; the last item adds
  the whole file's ``"sha256"`` (:func:`digest_info`, :func:`announced_digest`).

It lives in the files room, not in :mod:`rxchannel.hub`, because files must not import the
hub (tests/test_architecture.py) and both ends are here or above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rxchannel.core import ApplicationError, ErrorCode

__all__ = ["RESUME_SHAPE", "FileInfo", "FileRequest", "announced_digest", "digest_info"]

#: How a resume is asked for, as error messages show it.
RESUME_SHAPE = '{"offset": N, "sha256": "<hex of those N bytes>"}'


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class FileRequest:
    """What a ``files/<path>`` request asks for: bytes from ``offset`` (the requester's
    ``sha256`` of the bytes before it, for a resume) up to ``end`` (None: the file's end)."""

    offset: int = 0
    sha256: str | None = None
    end: int | None = None

    def to_bytes(self) -> bytes:
        """The request data: empty when it asks for the whole file."""
        if self == FileRequest():
            return b""
        spec: dict[str, Any] = {"offset": self.offset}
        if self.sha256 is not None:
            spec["sha256"] = self.sha256
        if self.end is not None:
            spec["end"] = self.end
        return json.dumps(spec).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> FileRequest:
        """Read (and check) a request's data.

        Raises:
            ApplicationError: (code INVALID) not a JSON object, a negative or non-integer
                offset, an end before it, a digest that is not 64 characters.
        """
        if not data:
            return cls()
        try:
            spec = json.loads(data)
            offset, prefix, end = spec.get("offset", 0), spec.get("sha256"), spec.get("end")
        except (ValueError, AttributeError):
            raise ApplicationError(f"request data must be JSON {RESUME_SHAPE}", code=ErrorCode.INVALID) from None
        if not _is_int(offset) or offset < 0:
            raise ApplicationError(f"offset must be a non-negative integer, got {str(offset)[:40]}", ErrorCode.INVALID)
        if end is not None and (not _is_int(end) or end < offset):
            raise ApplicationError(
                "end must be an integer not before offset (a range [offset, end))", ErrorCode.INVALID
            )
        if prefix is not None and not (isinstance(prefix, str) and len(prefix) == 64):
            raise ApplicationError(
                "sha256 must be the 64-character hex digest of the first offset bytes", ErrorCode.INVALID
            )
        return cls(offset, prefix, end)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What a file stream's first item says: the file's ``size`` (None: not announced), the
    ``offset`` it starts at, the ``end`` of a range, and why a resume ``restart``-ed from 0."""

    size: int | None
    offset: int = 0
    end: int | None = None
    restart: str | None = None

    def to_info(self) -> dict[str, Any]:
        """The metadata's JSON entries."""
        info: dict[str, Any] = {"type": "file", "size": self.size, "offset": self.offset}
        if self.end is not None:
            info["end"] = self.end
        if self.restart is not None:
            info["restart"] = self.restart
        return info

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> FileInfo:
        """Read (and check) the first item's metadata entries.

        Raises:
            ValueError: not a file stream, or an impossible size or offset (the message says which).
        """
        size, offset, end = info.get("size"), info.get("offset", 0), info.get("end")
        if info.get("type", "file") != "file":  # a buffer or an endpoint's response is not a file to verify
            raise ValueError(f"the sender sent a {str(info['type'])[:40]!r} stream, not a file")
        if size is not None and (not _is_int(size) or size < 0):
            raise ValueError(f"the sender announced an impossible size: {str(size)[:40]}")
        if not _is_int(offset):
            raise ValueError(f"the sender announced an impossible offset: {str(offset)[:40]}")
        restart = info.get("restart")
        return cls(size, offset, end if _is_int(end) else None, str(restart)[:200] if restart else None)


def digest_info(sha256: str) -> dict[str, str]:
    """The last item's entry: the whole file's SHA-256 (hex)."""
    return {"sha256": sha256}


def announced_digest(info: Mapping[str, Any]) -> str | None:
    """The whole file's SHA-256 an item announces (the last one does), or None."""
    return str(info["sha256"]) if "sha256" in info else None
