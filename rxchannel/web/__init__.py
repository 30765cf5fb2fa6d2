"""The browser side: the worker page a hub serves at ``/``, its ES-module client, and ``/report``.

The JavaScript lives beside this module (no build step); :class:`WorkerPage` adds its
routes to a hub's HTTP application (``TransportOptions.http_setup``).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

__all__ = ["WorkerPage"]


def _static(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = (resources.files(__name__) / name).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "no-store"})

    return handler


def _modules() -> list[str]:
    """The client's ES modules, served at ``/<name>.js`` (they import each other relatively)."""
    return [entry.name for entry in resources.files(__name__).iterdir() if entry.name.endswith(".js")]


class WorkerPage:
    """Serves the worker page and collects the reports browser workers post to ``/report``.

    Attributes:
        reports: the latest reports (bounded).
        on_report: called with each report as it arrives.
    """

    def __init__(self) -> None:
        self.reports: deque[dict[str, Any]] = deque(maxlen=100)
        self.on_report: Callable[[dict[str, Any]], object] | None = None

    def setup(self, app: web.Application) -> None:
        """Add ``/``, every ES module of the client (``/rxchannel.js``, ``/frames.js``, ...) and ``POST /report``."""
        app.router.add_get("/", _static("index.html", "text/html"))
        for module in sorted(_modules()):
            app.router.add_get(f"/{module}", _static(module, "text/javascript"))
        app.router.add_post("/report", self._report)

    async def _report(self, request: web.Request) -> web.Response:
        try:
            report = json.loads(await request.content.read(64 * 1024))
        except (ValueError, RecursionError):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        if not isinstance(report, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)
        return web.json_response({"ok": True})
