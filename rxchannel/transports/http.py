"""An HTTP listener (aiohttp) that transports attach their endpoints to.

The WebSocket transport serves ``GET /rsocket`` on it, WebRTC signaling serves
``POST /offer``; an application may add its own routes (the hub's worker page) through
:attr:`HttpListener.app` before :meth:`HttpListener.start`.
"""

from __future__ import annotations

from aiohttp import web

from .addresses import dialable_hosts

__all__ = ["HttpListener"]


class HttpListener:
    """One aiohttp application served on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, scheme: str, path: str = "", *, client_max_size: int = 1 << 20):
        #: the URL scheme workers dial (``http`` for WebRTC signaling, ``ws`` for WebSockets)
        self.scheme = scheme
        self.path = path
        self.app = web.Application(client_max_size=client_max_size)
        self.host = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.host, self.port = self._runner.addresses[0][:2]

    def _url(self, host: str) -> str:
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def url(self) -> str:
        """The URL of the bound address (for a wildcard bind, the first of :attr:`urls`)."""
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        """One dialable URL per address: several for a wildcard bind (0.0.0.0, ::), else one."""
        return [self._url(host) for host in dialable_hosts(self.host)]

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
