"""The hub's log on stderr: one line per connection, transfer, upload and refusal.

Text by default (``2026-11-25T10:00:00Z info connection from 10.0.0.7:50312 (webrtc)``),
or one JSON object per line with ``--log-json``::

    {"ts": "2026-11-25T10:00:00.123Z", "level": "info", "logger": "rxchannel.server",
     "event": "connection.open", "message": "...", "remote": "10.0.0.7:50312", "transport": "webrtc"}

Events: ``connection.open``, ``connection.close``, ``connection.refused`` (a wrong or
missing secret), ``transfer`` (a file stream ended: bytes, offset, outcome), ``upload``,
``refused`` (a request the hub said no to), and ``log`` for everything else (limits hit,
failures). Text that came from peers is made printable first (:func:`.errors.printable`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from .errors import printable

__all__ = ["configure_logging"]


def _timestamp(record: logging.LogRecord) -> str:
    millis = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{millis:03d}Z"


#: This process's place among the hub's (``serve --processes``): ``"2/4"``, or "" for a lone hub.
_PROCESS = ""


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        who = f"[{_PROCESS}] " if _PROCESS else ""
        line = f"{_timestamp(record)} {record.levelname.lower():7} {who}{printable(record.getMessage(), 2000)}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": printable(record.getMessage(), 2000),
        }
        if _PROCESS:
            entry["process"] = _PROCESS
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, printable(value, 500) if isinstance(value, str) else value)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (not the one at setup)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "info", *, as_json: bool = False, process: str = "") -> None:
    """Send rxchannel's (and aiortc's warnings) log records to stderr at ``level``; ``process``
    (``"2/4"``) marks every line of one of a hub's processes."""
    global _PROCESS
    _PROCESS = process
    handler = _Stderr()
    handler.setFormatter(_Json() if as_json else _Text())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("rxchannel").setLevel(level.upper())
