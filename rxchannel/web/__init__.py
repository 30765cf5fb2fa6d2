"""The browser side: the worker page a hub serves at ``/``, its ES-module client, and ``/report``.

The JavaScript lives beside this module (no build step); :class:`WorkerPage` adds its
routes to a hub's HTTP application (``TransportOptions.http_setup``).

**Reports are authenticated.** A page in job mode (``/?fetch=PATH&window=N|auto&report=1``,
docs/architecture.md, "The worker page's job mode") POSTs its result to ``/report``. Each
time the hub serves the page it puts a fresh random token in it; ``/report`` accepts a
report only with ``Authorization: Bearer <token>`` for a token this hub issued and that
has not expired, and only in that shape.
Anything else gets 403 (no valid token) or 400 (not a report) and never reaches
:attr:`WorkerPage.reports`. Another web site cannot forge one either: it cannot read the
page to learn a token, and a cross-origin request with an ``Authorization`` header needs a
CORS preflight the hub never grants.

**Reports are logged** (logger ``rxchannel.web``, event ``report``): an accepted report is one
line at INFO in the hub's log, with its fields; a refused one a line at DEBUG.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

from aiohttp import web

from rxchannel.core import RxChannelError

__all__ = ["ReportRefusedError", "WorkerPage", "check_report", "format_size"]

#: Reports from worker pages, one line each (event ``report``).
log = logging.getLogger("rxchannel.web")

#: The placeholder in ``index.html`` that each page load replaces with its report token.
TOKEN_PLACEHOLDER = "__RXCHANNEL_REPORT_TOKEN__"
#: The placeholders of the page's first paint: its status line and its list of files.
STATUS_PLACEHOLDER = "__RXCHANNEL_STATUS__"
FILES_PLACEHOLDER = "__RXCHANNEL_FILES__"
#: At most this many files are rendered into the page itself (the script lists them all).
FIRST_PAINT_FILES = 200
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_REPORT = 64 * 1024
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _static(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = (resources.files(__name__) / name).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, headers=_HEADERS)

    return handler


def format_size(size: int) -> str:
    """A size as the page's script writes it (``formatSize`` in ``page.js``): bytes, or KiB,
    MiB, GiB with JavaScript's ``toFixed`` rounding (half up), so that the rows of the first
    paint read the same as the ones the script puts in their place."""
    for unit, power, places in (("GiB", 30, "0.01"), ("MiB", 20, "0.1"), ("KiB", 10, "0.1")):
        if size >= 1 << power:
            value = (Decimal(size) / (1 << power)).quantize(Decimal(places), rounding=ROUND_HALF_UP)
            return f"{value} {unit}"
    return f"{size} B"


def _modules() -> list[str]:
    """The client's ES modules, served at ``/<name>.js`` (they import each other relatively)."""
    return [entry.name for entry in resources.files(__name__).iterdir() if entry.name.endswith(".js")]


class ReportRefusedError(RxChannelError, ValueError):
    """A ``/report`` body that is not a report (docs/architecture.md, "The worker page's
    job mode"); the message says which field."""


def check_report(report: object) -> dict[str, Any]:
    """Check a report's shape: ``{"ok": true, "path", "bytes", "sha256", "seconds", ...}`` or
    ``{"ok": false, "error", ...}`` (more fields may follow). Returns it.

    Raises:
        ReportRefusedError: naming the first field that is missing or wrong.
    """
    if not isinstance(report, dict):
        raise ReportRefusedError("a report is a JSON object")
    ok = report.get("ok")
    if not isinstance(ok, bool):
        raise ReportRefusedError('"ok" must be true or false')
    if not ok:
        if not isinstance(report.get("error"), str):
            raise ReportRefusedError('a failed report needs "error" (a string)')
        return report
    if not isinstance(report.get("path"), str) or not report["path"]:
        raise ReportRefusedError('"path" must be the fetched path')
    size = report.get("bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ReportRefusedError('"bytes" must be a non-negative integer')
    if not isinstance(report.get("sha256"), str) or not _HEX64.fullmatch(report["sha256"]):
        raise ReportRefusedError('"sha256" must be 64 lowercase hex digits')
    seconds = report.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ReportRefusedError('"seconds" must be a non-negative number')
    return report


class WorkerPage:
    """Serves the worker page and its modules, and collects the reports pages post to ``/report``.

    Args:
        token_lifetime: seconds a page's report token stays valid (a job that takes longer
            cannot report).
        max_tokens: live tokens kept; past it the oldest are forgotten (their pages can no
            longer report), so serving the page over and over cannot grow memory.
        clock: seconds, monotonic (tests pass their own).

    Attributes:
        reports: the latest accepted reports (bounded).
        on_report: called with each accepted report as it arrives.
        refused: how many ``/report`` requests were refused (no valid token, or not a report).
        listing: called with a limit, returns ``(files, more)``: the first files as ``(path,
            size)`` and whether there are more. Set, the page is served with them in its
            HTML, so its first paint (before any script runs or any connection opens) shows
            the hub's files. Leave it None for a hub whose listing needs a secret: the page
            is served to anyone who reaches the hub's HTTP port.
    """

    def __init__(
        self,
        *,
        token_lifetime: float = 24 * 3600,
        max_tokens: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ):
        if token_lifetime <= 0 or max_tokens <= 0:
            raise ValueError("token_lifetime and max_tokens must be positive")
        self.reports: deque[dict[str, Any]] = deque(maxlen=100)
        self.on_report: Callable[[dict[str, Any]], object] | None = None
        self.refused = 0
        self.listing: Callable[[int], tuple[list[tuple[str, int]], bool]] | None = None
        self.token_lifetime = token_lifetime
        self.max_tokens = max_tokens
        self.clock = clock
        #: SHA-256 of each live token -> when it expires (time.monotonic)
        self._tokens: OrderedDict[bytes, float] = OrderedDict()
        self._page = (resources.files(__name__) / "index.html").read_text(encoding="utf-8")

    def setup(self, app: web.Application) -> None:
        """Add ``/``, every ES module of the client (``/rxchannel.js``, ``/page.js``, ...) and ``POST /report``."""
        app.router.add_get("/", self._index)
        for module in sorted(_modules()):
            app.router.add_get(f"/{module}", _static(module, "text/javascript"))
        app.router.add_post("/report", self._report)

    def issue_token(self) -> str:
        """A new report token (each page load gets one). Forgets expired and surplus tokens."""
        now = self.clock()
        while self._tokens and (len(self._tokens) >= self.max_tokens or next(iter(self._tokens.values())) <= now):
            self._tokens.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._tokens[hashlib.sha256(token.encode()).digest()] = now + self.token_lifetime
        return token

    def _valid(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        # looked up by digest: the lookup's timing says nothing about a live token's characters
        expires = self._tokens.get(hashlib.sha256(token.strip().encode()).digest())
        return expires is not None and expires > self.clock()

    async def _index(self, request: web.Request) -> web.Response:
        status, files = await self._first_paint()
        page = (
            self._page.replace(TOKEN_PLACEHOLDER, self.issue_token())
            .replace(STATUS_PLACEHOLDER, status)
            .replace(FILES_PLACEHOLDER, files)
        )
        return web.Response(text=page, content_type="text/html", headers={**_HEADERS, "Referrer-Policy": "no-referrer"})

    async def _first_paint(self) -> tuple[str, str]:
        """The status line and file rows the page shows before its script has connected (HTML)."""
        if self.listing is None:
            return "the hub's files are listed here once this page has connected to it", ""
        try:
            files, more = await asyncio.to_thread(self.listing, FIRST_PAINT_FILES)
        except Exception:  # a listing that fails here is the script's to report, once connected
            log.debug("no listing for the page's first paint", exc_info=True)
            return "the hub's files are listed here once this page has connected to it", ""
        if not files:
            return "this hub shares no files yet", '<tr><td colspan="3" class="muted">the hub shares no files</td></tr>'
        rows = [
            f'<tr data-path="{html.escape(path)}"><td class="path">{html.escape(path)}</td>'
            f'<td class="size">{format_size(size)}</td><td><button class="fetch">fetch</button></td></tr>'
            for path, size in files
        ]
        if more:
            rows.append(
                f'<tr><td colspan="3" class="muted">… the first {len(files)}: '
                "the page lists all of them once connected</td></tr>"
            )
        return f"{len(files)}{'+' if more else ''} file(s) shared by this hub (as the page was served)", "".join(rows)

    def _refuse(self, request: web.Request, status: int, message: str) -> web.Response:
        self.refused += 1
        log.debug("refused a report from %s: %s", request.remote, message)
        return web.json_response({"error": message}, status=status)

    async def _report(self, request: web.Request) -> web.Response:
        if not self._valid(request.headers.get("Authorization", "")):
            return self._refuse(
                request,
                403,
                "report refused: no valid page token (reports are accepted only from pages this hub served)",
            )
        body = await request.content.read(_MAX_REPORT + 1)
        if len(body) > _MAX_REPORT:
            return self._refuse(request, 413, f"report refused: larger than {_MAX_REPORT} bytes")
        try:
            report = check_report(json.loads(body))
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, ReportRefusedError) else "not JSON"
            return self._refuse(request, 400, f"report refused: {reason}")
        _log_report(request.remote or "?", report)
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)
        return web.json_response({"ok": True})


def _log_report(remote: str, report: dict[str, Any]) -> None:
    """One line in the hub's log for a page's report (its text passes the log's printable filter)."""
    fields: dict[str, Any] = {
        key: report[key]
        for key in ("ok", "path", "bytes", "sha256", "seconds", "error", "window", "resumedFrom", "storage", "attempt")
        if key in report and isinstance(report[key], str | int | float | bool)
    }
    fields["remote"] = remote
    if report["ok"]:
        log.info(
            "the page at %s reported %s verified: %d bytes in %.2f s",
            remote,
            str(report["path"])[:200],
            report["bytes"],
            report["seconds"],
            extra={"event": "report", "fields": fields},
        )
    else:
        log.info(
            "the page at %s reported a failure%s: %s",
            remote,
            f" of {str(report['path'])[:200]}" if isinstance(report.get("path"), str) else "",
            str(report["error"])[:500],
            extra={"event": "report", "fields": fields},
        )
