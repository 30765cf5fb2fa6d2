"""What the CLI says when something goes wrong, and with which exit code: one table.

Exit codes (the contract; docs/architecture.md, "URLs and exit codes"):

====  =====================================================================
0     success (for ``fetch``: the file is complete and its SHA-256 verified)
1     a usage or local error: a bad option or URL, a file in the way, no room
2     the hub refused: no such file, a path outside its root, a wrong secret
3     an integrity failure: the bytes or the protocol were wrong (a lying hub)
4     the connection failed or was lost (a fetch that received something
      keeps it in its ``.part`` and resumes from it when run again)
130   interrupted (Ctrl-C); a fetch keeps what it received in its ``.part``
141   ``fetch -o -``: the reader of standard output went away (``| head``),
      quietly, as ``cat`` under ``head`` (:mod:`.stdio`)
====  =====================================================================

Every message says what happened and what to do *in that situation*: "run the same
command again" is said only where it helps (a fetch that has a ``.part`` to resume from,
a file that changed while served), never after a refused connection or an unknown host,
where nothing was received. Text that came from the other side
(a hub's error message, a file name) passes :func:`printable` first, so a hostile hub
cannot move the cursor, clear the screen or fake a "verified" line.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import traceback
import unicodedata
from dataclasses import dataclass
from typing import TextIO

from rxchannel.core import (
    ClosedResourceError,
    ConnectFailedError,
    ConnectionLostError,
    ErrorCode,
    RemoteError,
    RemoteProtocolError,
    RxChannelError,
    SetupRejectedError,
)
from rxchannel.files import FILE_CHANGED, FileBusyError, IntegrityError, TargetExistsError, TooLargeError
from rxchannel.hub import EndpointStatusError
from rxchannel.hub.endpoints import ENDPOINT_FAILED
from rxchannel.transports import WrongTransportError

__all__ = [
    "EXIT_INTEGRITY",
    "EXIT_INTERRUPTED",
    "EXIT_LOST",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "Failure",
    "NothingToFetchError",
    "UsageError",
    "cannot_listen",
    "explain",
    "fail",
    "printable",
    "report",
]

EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_INTEGRITY, EXIT_LOST, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class UsageError(Exception):
    """The command line cannot work as given; the message says what to change."""


class NothingToFetchError(RxChannelError):
    """A directory fetch found no files on the hub (exit 2, as "no such file"; ``--allow-empty``
    makes it a success): a script must not carry on as if something had been fetched."""


@dataclass(frozen=True, slots=True)
class Failure:
    """An exit code and the one line that explains it."""

    code: int
    message: str


def printable(text: object, limit: int = 600) -> str:
    """``text`` safe to print on a terminal, on one line, at most ``limit`` characters.

    Control and format characters (ESC sequences, carriage returns, bidi overrides) are
    shown escaped (``\\x1b``) instead of acting on the terminal; a byte that was not UTF-8 in
    a file name or argument (Python's surrogate escape) is shown as that byte (``\\xff``).
    """
    out = []
    for ch in str(text):
        if ch == "\n" or ch == "\t":
            out.append(" ")
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    line = "".join(out)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _with_hint(message: str, hint: str) -> str:
    return f"{message.rstrip('. ')}; {hint}" if hint else message


def explain(exc: BaseException, *, subject: str = "the request", kept: str | None = None) -> Failure:
    """The exit code and message for ``exc``.

    ``subject`` names what was asked (``'data/big.bin'``, ``the upload``); ``kept``: what a
    fetch has kept to resume from when run again (``big.bin.part (1.5 MiB)``), if anything.
    """
    keep = f"run the same command again to resume from {kept}" if kept else ""
    if isinstance(exc, ClosedResourceError) and isinstance(exc.__cause__, RxChannelError):
        return explain(exc.__cause__, subject=subject, kept=kept)  # closed by the other side: why
    if isinstance(exc, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, _with_hint("interrupted", keep))
    if isinstance(exc, UsageError):
        return Failure(EXIT_USAGE, str(exc))
    if isinstance(exc, NothingToFetchError):
        return Failure(EXIT_REFUSED, str(exc))
    if isinstance(exc, WrongTransportError):
        return Failure(EXIT_USAGE, str(exc))
    if isinstance(exc, TargetExistsError):
        return Failure(EXIT_USAGE, f"{exc} (add --force to replace, or choose another output with -o)")
    if isinstance(exc, FileBusyError):
        return Failure(EXIT_USAGE, str(exc))
    if isinstance(exc, TooLargeError):
        return Failure(EXIT_USAGE, f"{exc}: raise --max-size (or free disk space) to accept it")
    if isinstance(exc, SetupRejectedError):
        return Failure(EXIT_REFUSED, f"the hub refused the connection: {exc.message or exc}")
    if isinstance(exc, RemoteError) and exc.code in (ErrorCode.CONNECTION_ERROR, ErrorCode.CONNECTION_CLOSE):
        return Failure(EXIT_LOST, _with_hint(f"the hub ended the connection: {exc.message or exc}", keep))
    if isinstance(exc, EndpointStatusError):  # the service behind the hub answered with an error
        return Failure(EXIT_REFUSED, f"the endpoint answered {subject} with {exc}")
    if isinstance(exc, RemoteError) and exc.code == ENDPOINT_FAILED:
        return Failure(EXIT_LOST, f"{exc.message}; run the same command again")
    if isinstance(exc, RemoteError):
        if exc.code == FILE_CHANGED:
            return Failure(EXIT_LOST, f"{exc.message}; run the same command again")
        what = "refused" if exc.code != ErrorCode.APPLICATION_ERROR else "failed to serve"
        return Failure(EXIT_REFUSED, f"the hub {what} {subject}: {exc.message or exc}")
    if isinstance(exc, RemoteProtocolError):
        return Failure(
            EXIT_INTEGRITY,
            _with_hint(f"the other side broke the protocol ({exc}); nothing was accepted as complete", keep),
        )
    if isinstance(exc, IntegrityError):
        return Failure(EXIT_INTEGRITY, str(exc))
    if isinstance(exc, ConnectFailedError) and exc.status in (401, 403):
        return Failure(EXIT_REFUSED, str(exc))
    if isinstance(exc, ConnectionLostError):
        return Failure(EXIT_LOST, _with_hint(f"connection lost: {exc}", keep))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        what = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "the connection failed")
        return Failure(EXIT_LOST, _with_hint(what, keep))
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return Failure(EXIT_USAGE, f"{exc.strerror or exc}{where}")
    if isinstance(exc, (ValueError, RxChannelError)):
        return Failure(EXIT_USAGE, str(exc) or type(exc).__name__)
    return Failure(
        EXIT_USAGE,
        f"internal error, please report it: {type(exc).__name__}: {exc} (set RXCHANNEL_DEBUG=1 for the traceback)",
    )


def cannot_listen(host: str, port: int, exc: OSError) -> UsageError:
    """Why ``serve`` (or ``rendezvous``) cannot listen on ``host:port``, with the flag to change."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(
            f"{where}: {host!r} is not an address of this machine: give --host one of its addresses "
            "(0.0.0.0 for every interface, 127.0.0.1 for this machine only)"
        )
    if exc.errno == errno.EADDRINUSE:
        return UsageError(f"{where}: address already in use; choose another --port (0 picks a free one)")
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return UsageError(f"{where}: ports below 1024 need privileges; choose another --port (e.g. 8765)")
    reason = str(exc.strerror or exc)
    return UsageError(f"{where}: {reason[:1].lower()}{reason[1:]}")


def fail(message: str, code: int, *, json_line: bool = False, json_file: TextIO | None = None) -> int:
    """Print ``rxchannel: message`` on stderr (and ``{"error", "exit"}`` on stdout, or ``json_file``,
    with ``--json``); return ``code``."""
    text = printable(message)
    print(f"rxchannel: {text}", file=sys.stderr, flush=True)
    if json_line:
        print(json.dumps({"error": text, "exit": code}), file=json_file or sys.stdout, flush=True)
    return code


def report(
    exc: BaseException,
    *,
    subject: str = "the request",
    kept: str | None = None,
    json_line: bool = False,
    json_file: TextIO | None = None,
) -> int:
    """Explain ``exc`` on stderr (and stdout, or ``json_file``, with ``--json``); return its exit code."""
    failure = explain(exc, subject=subject, kept=kept)
    if os.environ.get("RXCHANNEL_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    return fail(failure.message, failure.code, json_line=json_line, json_file=json_file)
