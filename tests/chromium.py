"""A headless Chromium running the worker page, driven over the DevTools protocol (aiohttp only).

For the browser tests, the browser benchmark and unattended browser workers: start
Debian's ``chromium`` on a URL (a hub's page, usually in job mode), evaluate JavaScript in
the page, take screenshots, and read the renderer's peak memory. All DevTools traffic
stays on 127.0.0.1.

    async with Chromium(f"{hub_url}/?fetch=big.bin&report=1") as browser:
        state = await browser.evaluate("rxchannelPage.status()")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["FLAGS", "Chromium", "PageError", "chromium_path"]

#: Flags for a headless worker on loopback: WebRTC may use 127.0.0.1 (Chromium never
#: offers loopback candidates otherwise) with plain host addresses, and nothing phones home.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1000,720",
]


class PageError(RuntimeError):
    """JavaScript evaluated in the page threw; the message is the page's."""


def chromium_path() -> str | None:
    """The Chromium binary (``$RXCHANNEL_CHROMIUM``, else ``chromium`` on PATH), or None."""
    return os.environ.get("RXCHANNEL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """A headless Chromium on one URL with one DevTools session on its page.

    Use as an async context manager: leaving it kills the browser and removes its profile
    (with whatever the page stored in it) unless ``profile`` names a directory to keep
    (a later browser on the same profile sees the same storage).
    """

    def __init__(
        self,
        url: str,
        *,
        profile: str | os.PathLike[str] | None = None,
        extra_flags: list[str] | None = None,
        start_timeout: float = 30,
    ):
        self.url = url
        self.extra_flags = list(extra_flags or [])
        self.start_timeout = start_timeout
        self.keep_profile = profile is not None
        self.profile = Path(profile) if profile is not None else Path(tempfile.mkdtemp(prefix="rxchannel-chromium-"))
        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Chromium:
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)  # a kept profile's, from the last run
        binary = chromium_path()
        if binary is None:
            raise FileNotFoundError("Chromium is needed: install Debian's chromium (`make browser` does)")
        self.proc = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            *self.extra_flags,
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            self.url,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(self.start_timeout):
                await self._attach()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _attach(self) -> None:
        port_file = self.profile / "DevToolsActivePort"
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode} before it listened")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        page: dict[str, Any] | None = None
        while page is None:
            try:
                async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    page = next((p for p in await response.json() if p.get("type") == "page"), None)
            except aiohttp.ClientError:
                pass
            if page is None:
                await asyncio.sleep(0.05)
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = message.json()
            future = self._pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the DevTools connection closed (did the browser exit?)"))

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call a DevTools method on the page; returns its result.

        Raises:
            PageError: DevTools answered with an error.
            ConnectionError: the browser went away.
        """
        if self._ws is None or self._ws.closed:
            raise ConnectionError("the browser is not running")
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_json({"id": ident, "method": method, "params": params or {}})
        answer = await future
        if "error" in answer:
            raise PageError(f"{method}: {answer['error'].get('message')}")
        return dict(answer["result"])

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited; values come back as JSON).

        Raises:
            PageError: the expression threw (or its promise rejected).
        """
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise PageError(str(text))
        return result["result"].get("value")

    async def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """A PNG of the whole page as it is now (beyond the window if it is longer)."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        result = await self.send(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        out = Path(path)
        out.write_bytes(base64.b64decode(result["data"]))
        return out

    def renderer_peak_rss(self) -> int:
        """The largest peak resident set (VmHWM, bytes) among this browser's renderer processes (Linux)."""
        if self.proc is None:
            return 0
        peak = 0
        for pid in _descendants(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if b"--type=renderer" not in cmdline:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        return peak

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the browser's live processes (Linux)."""
        if self.proc is None:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in _descendants(self.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def kill(self) -> None:
        """Like closing the tab without goodbye: the process vanishes, nothing is sent."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def __aexit__(self, *exc_info: object) -> None:
        self.kill()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()
        if self.proc is not None:
            await self.proc.wait()
        if not self.keep_profile:
            shutil.rmtree(self.profile, ignore_errors=True)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found
