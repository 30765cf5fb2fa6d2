"""One exchange with an endpoint's upstream: the HTTP request (on a connection of its own,
redirects followed only within the endpoint), the response read only as pulled, and its
body as a source of items (:class:`EndpointBody`)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from rxchannel.core import ApplicationError, request_metadata
from rxchannel.runtime import Payload

from ._endpoint_config import ENDPOINT_FAILED, Endpoint, EndpointLimits
from ._endpoint_rules import refuse, response_headers, within

__all__ = ["Ask", "EndpointBody", "Exchange"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(slots=True)
class Ask:
    """What a worker asked for, checked."""

    method: str
    url: URL
    headers: CIMultiDict[str]
    size: int | None
    rest: str


class Exchange:
    """One HTTP request to an endpoint's upstream, and its response, on a connection of its own.

    Attributes:
        endpoint: the endpoint asked.
        method, url: the request (``url`` is the upstream's: logged, never sent to the worker).
        response: the upstream's response once its headers arrived.
        sent: request body bytes handed to the upstream connection.
        taken: response body bytes handed to the worker's stream.
        outcome: ``"complete"``, ``"stopped"`` (the worker cancelled) or ``"failed"``, once over.
    """

    def __init__(self, endpoint: Endpoint, limits: EndpointLimits, ask: Ask, remote: str):
        self.endpoint, self.limits = endpoint, limits
        self.method, self.url, self.remote = ask.method, ask.url, remote
        self.path = ask.rest
        self._ask = ask
        self.response: aiohttp.ClientResponse | None = None
        self.sent = 0
        self.taken = 0
        self.outcome: str | None = None
        self.started = time.monotonic()
        self._session: aiohttp.ClientSession | None = None
        self._socket: socket.socket | None = None
        self._deadline: asyncio.Timeout | None = None
        self._phase = "waiting for the response"
        #: why the worker's upload was refused (aiohttp reports only that the body failed)
        self.upload_error: ApplicationError | None = None

    @property
    def bytes_read(self) -> int:
        """Response body bytes the hub has read from the upstream's socket (taken or buffered)."""
        return self.response.content.total_bytes if self.response is not None else 0

    @property
    def upstream_socket(self) -> socket.socket | None:
        """The upstream connection's socket (tests read its buffer sizes), or None before it
        exists and once it is closed."""
        sock = self._socket
        return sock if sock is not None and sock.fileno() >= 0 else None

    def _new_socket(self, address: tuple[Any, ...]) -> socket.socket:
        family, kind, proto = address[0], address[1], address[2]
        sock = socket.socket(family=family, type=kind, proto=proto)
        size = self.limits.socket_buffer
        if size is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        self._socket = sock
        return sock

    def _failed(self, what: str) -> ApplicationError:
        return ApplicationError(f"endpoint {self.endpoint.name!r}: {what}", ENDPOINT_FAILED)

    async def open(self, body: bytes | AsyncIterator[bytes] | None) -> aiohttp.ClientResponse:
        """Send the request and wait for the response headers (following redirects within the endpoint).

        Raises:
            ApplicationError: ENDPOINT_FAILED (refused, timed out, reset), REJECTED (a
                redirect out of the endpoint), as the worker should see it.
        """
        limits = self.limits
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=1, socket_factory=self._new_socket),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=limits.connect_timeout, sock_read=None),
            auto_decompress=False,
            read_bufsize=limits.read_size,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding",),
            headers={"User-Agent": "rxchannel-hub"},
        )
        method, url = self.method, self.url
        loop = asyncio.get_running_loop()
        try:
            for hop in range(limits.max_redirects + 1):
                async with asyncio.timeout(None) as deadline:
                    self._deadline = deadline
                    if body is None or isinstance(body, bytes):
                        self._phase = "waiting for the response"
                        deadline.reschedule(loop.time() + limits.response_timeout)
                    else:
                        self._phase = "sending the request body"
                        deadline.reschedule(loop.time() + limits.idle_timeout)
                    response = await self._session.request(
                        method,
                        url,
                        headers=self._ask.headers,
                        data=body,
                        allow_redirects=False,
                        chunked=None if self._ask.size is not None or not isinstance(body, AsyncIterator) else True,
                    )
                self._deadline = None
                self.response = response
                if response.status not in _REDIRECTS or "location" not in response.headers:
                    return response
                target = url.join(URL(response.headers["location"]))
                if not within(self.endpoint, target):
                    raise refuse(
                        f"endpoint {self.endpoint.name!r}: the upstream redirected to a location outside the "
                        "endpoint, which the hub does not follow"
                    )
                if body is not None and not (isinstance(body, bytes) and response.status == 303):
                    return response  # a redirect of an upload would need its body again: passed on as is
                if hop == limits.max_redirects:
                    raise self._failed(f"more than {limits.max_redirects} redirects")
                response.close()
                self.response = None
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, body = ("GET" if method != "HEAD" else "HEAD"), None
                url = target
            raise AssertionError("unreachable")  # pragma: no cover
        except ApplicationError:
            raise
        except aiohttp.ConnectionTimeoutError:
            raise self._failed(f"no connection to its upstream within {limits.connect_timeout:g} s") from None
        except TimeoutError:
            if self.upload_error is not None:
                raise self.upload_error from None
            if self._phase == "sending the request body":
                raise self._failed(f"the request body stalled for {limits.idle_timeout:g} s") from None
            raise self._failed(f"its upstream sent no response within {limits.response_timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            number = exc.os_error.errno
            reason = os.strerror(number) if number else type(exc.os_error).__name__  # strerror names the address
            raise self._failed(f"cannot connect to its upstream ({reason.lower()})") from None
        except (aiohttp.ClientError, OSError) as exc:
            if self.upload_error is not None:
                raise self.upload_error from None
            if isinstance(exc, aiohttp.ServerDisconnectedError):
                raise self._failed("its upstream closed the connection without a response") from None
            raise self._failed(f"the request to its upstream failed ({_reason(exc)})") from None

    def body_sent(self) -> None:
        """The request body went out: the response timeout starts now (for a body the worker streams)."""
        if self._deadline is not None:
            self._phase = "waiting for the response"
            self._deadline.reschedule(asyncio.get_running_loop().time() + self.limits.response_timeout)

    def progressed(self) -> None:
        """A chunk of the request body was taken: the idle timeout starts again."""
        if self._deadline is not None and self._phase == "sending the request body":
            self._deadline.reschedule(asyncio.get_running_loop().time() + self.limits.idle_timeout)

    def info(self) -> dict[str, Any]:
        """The first item's metadata: type, status, reason, headers, size (when known)."""
        response = self.response
        assert response is not None
        info: dict[str, Any] = {
            "type": "endpoint",
            "status": response.status,
            "reason": response.reason or "",
            "headers": response_headers(self.endpoint, response.headers),
        }
        if response.content_length is not None and self.method != "HEAD":
            info["size"] = response.content_length
        return info

    def empty(self) -> bool:
        """Whether the response can have no body (HEAD, 1xx, 204, 304, Content-Length: 0)."""
        response = self.response
        assert response is not None
        return self.method == "HEAD" or response.status in (204, 304) or response.content_length == 0

    async def read(self) -> bytes:
        """The next bytes of the body (b"" at its end), at most ``read_size``.

        Raises:
            ApplicationError: ENDPOINT_FAILED (the upstream went silent or broke off),
                REJECTED (past ``max_response_body``).
        """
        response = self.response
        assert response is not None
        limits = self.limits
        try:
            async with asyncio.timeout(limits.idle_timeout):
                data = await response.content.read(limits.read_size)
        except TimeoutError:
            raise self._failed(
                f"its upstream sent nothing for {limits.idle_timeout:g} s (after {self.taken} bytes of the body)"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            if self.upload_error is not None:
                raise self.upload_error from None
            raise self._failed(
                f"the connection to its upstream broke after {self.taken} bytes of the body ({_reason(exc)})"
            ) from None
        self.taken += len(data)
        if limits.max_response_body is not None and self.taken > limits.max_response_body:
            raise refuse(
                f"endpoint {self.endpoint.name!r}: the response is larger than {limits.max_response_body} bytes, "
                "the most this hub passes on"
            )
        return data

    def close(self, outcome: str) -> None:
        """Close the upstream connection (an unfinished response is aborted: the upstream sees
        its connection closed). Idempotent; the first outcome counts."""
        if self.outcome is None:
            self.outcome = outcome
        if self.response is not None:
            self.response.close()
        if self._session is not None:
            # the connector keeps no connection (force_close, and the response closed it):
            # detaching ends the session without a coroutine, so this runs in on_finish too
            self._session.detach()
            self._session = None


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0][:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class EndpointBody:
    """The response body as items, read from the upstream only as they are pulled.

    The first item carries the status and headers (:meth:`Exchange.info`) with the body's
    first bytes. When the upstream said how long the body is, the last item is marked
    (``Payload.last``), so the sender never reads ahead of credit to find the end;
    otherwise it pulls one item ahead (one read), as for any source of unknown length.
    """

    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        response = exchange.response
        assert response is not None
        self.marks_last = exchange.empty() or response.content_length is not None

    def __aiter__(self) -> AsyncIterator[Payload]:
        return _BodyItems(self.exchange)


class _BodyItems:
    """The iterator of an :class:`EndpointBody`: ``aclose`` closes the exchange even if it never started."""

    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        self._first = True
        self._done = False

    def __aiter__(self) -> _BodyItems:
        return self

    async def __anext__(self) -> Payload:
        exchange = self.exchange
        if self._done:
            raise StopAsyncIteration
        try:
            if self._first and exchange.empty():
                self._done = True
                exchange.close("complete")
                return Payload(b"", request_metadata(None, exchange.info()), last=True)
            data = await exchange.read()
        except asyncio.CancelledError:
            self._done = True
            exchange.close("stopped")
            raise
        except BaseException:
            self._done = True
            exchange.close("failed")
            raise
        response = exchange.response
        assert response is not None
        size = response.content_length
        last = size is not None and exchange.taken >= size
        if not data and not self._first:
            self._done = True
            exchange.close("complete")
            raise StopAsyncIteration
        metadata = request_metadata(None, exchange.info()) if self._first else None
        self._first = False
        if last or not data:
            self._done = True
            exchange.close("complete")
            return Payload(data, metadata, last=True)
        return Payload(data, metadata)

    async def aclose(self) -> None:
        self._done = True
        self.exchange.close("stopped")
