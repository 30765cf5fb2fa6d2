"""Endpoints: HTTP services the hub can reach, served to its workers with demand (the third stream type).

``Hub(root, endpoints={"api": "http://127.0.0.1:8080/v1"})`` (``rxchannel serve ROOT
--endpoint api=http://127.0.0.1:8080/v1``) serves route ``endpoints/api/<path>`` as one
HTTP request to ``http://127.0.0.1:8080/v1/<path>``:

* request-stream: method, query and headers from the request's metadata, its data as the
  body (if any); the response body comes back as items, read from the upstream only as
  the worker's credit arrives;
* request-response: the same, the whole body in one item (up to ``max_buffered_response``);
* request-channel: the request's data then the worker's items are the body, written
  upstream as the upstream takes them (chunked, or ``size`` bytes); the response as for
  request-stream;
* ``endpoints`` (request-response): the JSON list of the endpoint names.

The request's JSON metadata entry: ``{"method": "GET", "query": {"k": "v" or ["v", ...]},
"headers": {"accept": "..."}, "size": N}`` (all optional; ``size`` only for a channel: the
body's length, sent as Content-Length and checked). A query may also follow the path
(``endpoints/api/items?limit=5``).

The first item's metadata: ``{"type": "endpoint", "status": 200, "reason": "OK",
"headers": {...}, "size": N}`` (``size`` when the upstream sent Content-Length). Its data
is the body's first bytes (empty for an empty body: then it is also the last item). A
status of 400 or more is passed through as is: the stream carries the error page.

Demand: a pull of the body source is one read of at most ``read_size`` bytes from the
upstream response. aiohttp stops reading the upstream socket once it holds
twice ``read_size`` bytes nobody has taken, so the upstream's TCP window closes and its
server's writes wait: the hub never reads more than (items consumed + credit + 1) times
``read_size`` + aiohttp's buffer + one socket read ahead of the worker.

Safety: only the configured endpoints are reachable; the path is checked segment by
segment (no ``..`` or ``.``, no encoded ``/`` or ``\\``, no scheme or ``//`` that would name
another host), and the URL built is checked again to be under the endpoint's prefix;
redirects are followed only within the endpoint (and only for requests without a
body), any other is refused; headers pass through allow-lists both ways, hop-by-hop
headers never; sizes and times are limited (:class:`EndpointLimits`); refusals say why
and never show the upstream's address. The hub's ``--secret`` covers these routes as
every other (it is checked in SETUP).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from rxchannel.core import ApplicationError, ErrorCode, RxChannelError, request_metadata
from rxchannel.files._common import CHUNK_SIZE
from rxchannel.runtime import Payload, RemoteStream, Request, Router

__all__ = [
    "ENDPOINT_FAILED",
    "HOP_BY_HOP",
    "REQUEST_HEADERS",
    "RESPONSE_HEADERS",
    "Endpoint",
    "EndpointBody",
    "EndpointLimits",
    "EndpointRoutes",
    "Exchange",
    "parse_endpoint",
    "upstream_url",
]

log = logging.getLogger("rxchannel.hub")

#: The endpoint's upstream could not be reached, timed out, or broke off its response: a
#: transient failure (asking again may work). An application code (Protocol.md leaves
#: 0x301.. to applications) beside those of ``rxchannel.core``'s table.
ENDPOINT_FAILED = 0x00000305

#: Request headers a worker may send upstream (lower case); any other is dropped.
REQUEST_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-encoding",
        "content-language",
        "content-type",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-event-id",
        "range",
        "x-request-id",
    }
)
#: Response headers passed back to the worker (lower case); any other is dropped.
RESPONSE_HEADERS = frozenset(
    {
        "accept-ranges",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-range",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "location",
        "retry-after",
        "vary",
        "x-request-id",
    }
)
#: Hop-by-hop headers (RFC 9110 §7.6.1): they concern one connection and are never passed on,
#: whatever the allow-lists say (nor are the headers a Connection header names).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_SAFE = "!$&'()*+,;=:@-._~"
_MAX_HEADER = 8 * 1024
_MAX_QUERY = 8 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream: ``endpoints/<name>/<path>`` goes to ``<url>/<path>``.

    ``url`` is ``http://HOST:PORT[/prefix]`` (or ``https://``), with no query, fragment or
    credentials. The allow-lists are the header names (lower case) passed each way.

    Raises:
        ValueError: a name or URL that cannot be an endpoint (the message says why).
    """

    name: str
    url: str
    request_headers: frozenset[str] = REQUEST_HEADERS
    response_headers: frozenset[str] = RESPONSE_HEADERS

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"endpoint name {self.name[:80]!r}: use letters, digits, '.', '_' and '-' (up to 64)")
        try:
            base = URL(self.url)
        except ValueError:
            raise ValueError(f"endpoint {self.name}: {self.url[:200]!r} is not a URL") from None
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"endpoint {self.name}: {self.url[:200]!r} must be http://HOST:PORT[/prefix] (or https)")
        if base.query_string or base.fragment or base.user or base.password:
            raise ValueError(f"endpoint {self.name}: the URL may not have a query, a fragment or credentials")
        if any(segment in (".", "..") for segment in urlsplit(self.url).path.split("/")):  # before yarl resolves them
            raise ValueError(f"endpoint {self.name}: the URL's path may not contain '.' or '..'")

    @property
    def base(self) -> URL:
        """The upstream's URL with its prefix (no trailing ``/``)."""
        url = URL(self.url)
        return url.with_path(url.path.rstrip("/") or "/")

    @property
    def prefix(self) -> str:
        """The path every request of this endpoint stays under (``""`` for the upstream's root)."""
        return self.base.path.rstrip("/")


def parse_endpoint(text: str) -> Endpoint:
    """``NAME=http://HOST:PORT[/prefix]`` (the form of ``serve --endpoint``).

    Raises:
        ValueError: not that form, or as :class:`Endpoint`.
    """
    name, sep, url = text.partition("=")
    if not sep:
        raise ValueError(f"{text[:200]!r} is not NAME=http://HOST:PORT[/prefix]")
    return Endpoint(name.strip(), url.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointLimits:
    """What one exchange may cost the hub; a request past a limit is refused, saying which.

    Times (seconds): ``connect_timeout`` to connect to the upstream; ``response_timeout``
    for its response headers once the request (and its body) went out; ``idle_timeout``
    for the next bytes of a body while someone waits for them (the upstream's response
    body, or a worker's upload), so a slow worker is never a timeout but a silent party is.
    Sizes (bytes): ``max_request_body`` uploaded, ``max_response_body`` streamed back
    (None: no limit, since nothing is buffered), ``max_buffered_response`` for a
    request-response (the whole body in one item). ``read_size``: bytes per item, and
    aiohttp's read buffer (it holds at most twice this before pausing the socket).
    ``max_exchanges`` at once hub-wide and ``max_exchanges_per_connection`` per worker.
    ``upload_window``: items of a worker's upload in flight to the hub. ``socket_buffer``:
    the upstream connection's kernel buffers (SO_SNDBUF and SO_RCVBUF), fixed, which
    bounds how far the upstream may be ahead of the hub (and the hub of the upstream on
    an upload) beyond aiohttp's buffer; None leaves them to the kernel's autotuning (up to
    several MiB each way on Linux), which is faster on a long path.
    """

    connect_timeout: float = 10.0
    response_timeout: float = 30.0
    idle_timeout: float = 60.0
    max_request_body: int = 1 << 30
    max_response_body: int | None = None
    max_buffered_response: int = 16 << 20
    max_redirects: int = 5
    max_exchanges: int = 256
    max_exchanges_per_connection: int = 16
    read_size: int = CHUNK_SIZE
    upload_window: int = 16
    socket_buffer: int | None = None

    def __post_init__(self) -> None:
        if min(self.connect_timeout, self.response_timeout, self.idle_timeout) <= 0:
            raise ValueError("endpoint timeouts must be positive")
        sizes = (self.max_request_body, self.max_buffered_response, self.read_size, self.upload_window)
        if min(sizes) <= 0 or (self.max_response_body is not None and self.max_response_body < 0):
            raise ValueError("endpoint sizes and the upload window must be positive")
        if self.socket_buffer is not None and self.socket_buffer <= 0:
            raise ValueError("socket_buffer must be positive (or None: the kernel's own)")
        if self.max_redirects < 0 or self.max_exchanges <= 0 or self.max_exchanges_per_connection <= 0:
            raise ValueError("max_redirects must be >= 0, and the exchange limits positive")


def _refuse(message: str, code: int = ErrorCode.REJECTED) -> ApplicationError:
    return ApplicationError(message, code)


def upstream_url(endpoint: Endpoint, rest: str, query: object = None) -> URL:
    """The upstream URL for ``endpoints/<name>/<rest>``, checked to stay under the endpoint.

    ``rest`` may end with ``?query``; ``query`` (a dict of strings or lists of strings, or
    a string) is added to it.

    Raises:
        ApplicationError: REJECTED for a path that would leave the endpoint (``..``, an
            encoded separator, a scheme or ``//``), INVALID for a malformed query.
    """
    path, _, query_string = rest.partition("?")
    shown = rest[:200]
    if "#" in rest:
        raise _refuse(f"{shown!r}: a fragment has no place in a request to an endpoint", ErrorCode.INVALID)
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in rest) or "\\" in path:
        raise _refuse(f"{shown!r}: spaces, control characters and backslashes are not allowed in an endpoint's path")
    if path.startswith("/") or _SCHEME.match(path):
        raise _refuse(f"{shown!r} names another host (an absolute URL): an endpoint reaches only its own upstream")
    segments = path.split("/") if path else []
    clean = []
    for index, segment in enumerate(segments):
        try:
            decoded = unquote(segment, errors="strict") if "%" in segment else segment
        except UnicodeDecodeError:
            raise _refuse(f"{shown!r}: a percent-escape that is not UTF-8", ErrorCode.INVALID) from None
        if decoded in (".", ".."):
            raise _refuse(f"{shown!r}: '.' and '..' are not allowed in an endpoint's path")
        if "/" in decoded or "\\" in decoded or "\x00" in decoded:
            raise _refuse(f"{shown!r}: an encoded '/', '\\' or NUL is not allowed in an endpoint's path")
        if not segment and index != len(segments) - 1:
            raise _refuse(f"{shown!r}: empty segments ('//') are not allowed in an endpoint's path")
        clean.append(quote(decoded, safe=_SAFE))
    raw_prefix = endpoint.base.raw_path.rstrip("/")
    full = raw_prefix + "/" + "/".join(clean) if clean else (raw_prefix or "/")
    url = endpoint.base.with_path(full, encoded=True)
    if query_string:
        url = _with_raw_query(url, query_string)
    if query is not None:
        url = _add_query(url, query)
    if len(url.raw_query_string) > _MAX_QUERY:
        raise _refuse(f"the query is longer than {_MAX_QUERY} characters", ErrorCode.INVALID)
    if not _within(endpoint, url):  # defence in depth: what was built must be under the prefix
        raise _refuse(f"{shown!r} would leave the endpoint {endpoint.name!r}")
    return url


def _with_raw_query(url: URL, query: str) -> URL:
    """``url`` with ``query`` appended as written (percent-escapes kept, anything else escaped)."""
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == "#" for ch in query):
        raise _refuse("the query may not contain spaces, control characters or '#'", ErrorCode.INVALID)
    query = quote(query, safe=_SAFE + "/?%")
    joined = f"{url.raw_query_string}&{query}" if url.raw_query_string else query
    return URL(f"{url.with_query(None)}?{joined}", encoded=True)


def _add_query(url: URL, query: object) -> URL:
    if isinstance(query, str):
        return _with_raw_query(url, query)
    if not isinstance(query, dict):
        raise _refuse('"query" must be an object of strings (or lists of strings), or a string', ErrorCode.INVALID)
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
            raise _refuse(
                f'"query" value for {str(key)[:40]!r} must be a string or a list of strings', ErrorCode.INVALID
            )
        pairs.extend((str(key), str(v)) for v in values)
    return url.extend_query(pairs)


def _within(endpoint: Endpoint, url: URL) -> bool:
    """Whether ``url`` is the endpoint's upstream, at or under its prefix, with no dot segments."""
    base = endpoint.base
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        return False
    path, prefix = url.path, endpoint.prefix
    for segment in url.raw_path.split("/"):  # a redirect's Location may hide dot segments or separators
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            return False
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _headers_out(endpoint: Endpoint, given: object) -> CIMultiDict[str]:
    """The worker's headers that may go upstream (allow-list, no hop-by-hop), checked."""
    headers: CIMultiDict[str] = CIMultiDict()
    if given is None:
        return headers
    if not isinstance(given, dict):
        raise _refuse('"headers" must be an object of header names to strings', ErrorCode.INVALID)
    named = [str(v) for k, v in given.items() if str(k).lower() == "connection"]
    dropped = {name.strip().lower() for value in named for name in value.split(",")}
    for name, value in given.items():
        lower = str(name).lower()
        if lower in HOP_BY_HOP or lower in dropped or lower not in endpoint.request_headers:
            continue
        if not isinstance(value, str) or len(value) > _MAX_HEADER or any(c in value for c in "\r\n\x00"):
            raise _refuse(
                f"header {lower!r} must be a string of at most {_MAX_HEADER} characters, on one line", ErrorCode.INVALID
            )
        headers.add(lower, value)
    return headers


def response_headers(endpoint: Endpoint, headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream's response headers the worker may see: allow-listed, no hop-by-hop, one
    value per name (repeated headers joined with ``", "``)."""
    connection = {n.strip().lower() for v in _all(headers, "connection") for n in v.split(",")}
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection or lower not in endpoint.response_headers:
            continue
        out[lower] = f"{out[lower]}, {value}" if lower in out else value
    return out


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value is not None else []


@dataclass(slots=True)
class _Ask:
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

    def __init__(self, endpoint: Endpoint, limits: EndpointLimits, ask: _Ask, remote: str):
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
                if not _within(self.endpoint, target):
                    raise _refuse(
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
            raise _refuse(
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


class EndpointRoutes:
    """The ``endpoints/`` routes of a hub (:class:`~rxchannel.hub.Hub` registers them).

    ``endpoints``: ``{"name": "http://..."}`` (or :class:`Endpoint` values, or an iterable
    of them); none is fine (every request is then refused, saying so).

    Attributes:
        endpoints: the configured endpoints by name.
        limits: what one exchange may cost.
        exchanges: the exchanges under way (tests read their byte counts).
        opened: exchanges started so far, in all.

    Raises:
        ValueError: a bad name or URL, or a name given twice.
    """

    def __init__(
        self,
        endpoints: Mapping[str, str | Endpoint] | Iterable[Endpoint] | None = None,
        limits: EndpointLimits | None = None,
    ):
        self.endpoints = _table(endpoints)
        self.limits = limits or EndpointLimits()
        self.exchanges: set[Exchange] = set()
        self.opened = 0
        self._by_peer: Counter[int] = Counter()

    def register(self, router: Router) -> None:
        router.stream("endpoints/")(self.stream)
        router.response("endpoints/")(self.respond)
        router.channel("endpoints/", window=self.limits.upload_window)(self.upload)
        router.response("endpoints")(self.names)

    async def names(self, request: Request) -> Payload:
        """The endpoint names (never their upstreams' addresses)."""
        return Payload(json.dumps(sorted(self.endpoints)).encode())

    def _ask(self, request: Request, *, streamed: bool) -> tuple[Endpoint, _Ask]:
        route = (request.route or "")[len("endpoints/") :]
        name, _, rest = route.partition("/")
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            known = ", ".join(sorted(self.endpoints)) or "none"
            raise _refuse(f"no endpoint named {name[:80]!r} on this hub (it has: {known[:300]})")
        info = request.info
        method = info.get("method", "POST" if streamed else "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise _refuse(f"method {str(method)[:20]!r} is not allowed: use one of {', '.join(sorted(METHODS))}")
        size = info.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise _refuse('"size" must be the body\'s length in bytes', ErrorCode.INVALID)
        body = (size if size is not None else 0) if streamed else len(request.data)
        if body > self.limits.max_request_body:
            raise _refuse(
                f"the request body is {body} bytes; endpoints take at most {self.limits.max_request_body} "
                "(--endpoint-max-request)"
            )
        url = upstream_url(endpoint, rest, info.get("query"))
        headers = _headers_out(endpoint, info.get("headers"))
        if size is not None:
            headers["Content-Length"] = str(size)
        return endpoint, _Ask(method.upper(), url, headers, size, rest)

    def _start(self, request: Request, endpoint: Endpoint, ask: _Ask) -> Exchange:
        """Count the exchange in (released when the stream is over) or refuse it."""
        limits, peer = self.limits, id(request.peer)
        if len(self.exchanges) >= limits.max_exchanges:
            raise _refuse(
                f"the hub has {len(self.exchanges)} endpoint requests under way (limit {limits.max_exchanges}): "
                "try again shortly"
            )
        if self._by_peer[peer] >= limits.max_exchanges_per_connection:
            raise _refuse(
                f"this connection has {self._by_peer[peer]} endpoint requests under way "
                f"(limit {limits.max_exchanges_per_connection}): finish or cancel one first"
            )
        exchange = Exchange(endpoint, limits, ask, request.remote)
        self.exchanges.add(exchange)
        self._by_peer[peer] += 1
        self.opened += 1

        def over() -> None:
            exchange.close("stopped")
            self.exchanges.discard(exchange)
            self._by_peer[peer] -= 1
            if not self._by_peer[peer]:
                del self._by_peer[peer]
            _log(exchange)

        request.on_finish(over)  # however the stream ends, even before the response came
        return exchange

    async def stream(self, request: Request) -> EndpointBody:
        """Request-stream: the response body, read only as the worker grants credit."""
        endpoint, ask = self._ask(request, streamed=False)
        exchange = self._start(request, endpoint, ask)
        await self._open(exchange, request.data or (b"" if ask.method in ("POST", "PUT", "PATCH") else None))
        return EndpointBody(exchange)

    async def respond(self, request: Request) -> Payload:
        """Request-response: the whole body in one item, up to ``max_buffered_response`` bytes."""
        endpoint, ask = self._ask(request, streamed=False)
        exchange = self._start(request, endpoint, ask)
        await self._open(exchange, request.data or (b"" if ask.method in ("POST", "PUT", "PATCH") else None))
        limit = self.limits.max_buffered_response
        size = exchange.response.content_length if exchange.response is not None else None
        if size is not None and size > limit:
            exchange.close("failed")
            raise _refuse(f"the response is {size} bytes; a request-response holds at most {limit}: stream it instead")
        parts: list[bytes] = []
        info = exchange.info()
        try:
            while not exchange.empty() and (data := await exchange.read()):
                parts.append(data)
                if exchange.taken > limit:
                    raise _refuse(
                        f"the response is over {limit} bytes, the most a request-response holds: stream it instead"
                    )
        except BaseException:
            exchange.close("failed")
            raise
        exchange.close("complete")
        return Payload(b"".join(parts), request_metadata(None, info))

    async def upload(self, request: Request) -> EndpointBody:
        """Request-channel: the request's data then the worker's items as the body, written
        upstream as the upstream takes them (the next item is pulled once the last was
        written and the connection drained); then the response, as :meth:`stream`."""
        endpoint, ask = self._ask(request, streamed=True)
        exchange = self._start(request, endpoint, ask)
        await self._open(exchange, _upload(request, exchange, ask.size))
        return EndpointBody(exchange)

    async def _open(self, exchange: Exchange, body: bytes | AsyncIterator[bytes] | None) -> None:
        try:
            await exchange.open(body)
        except asyncio.CancelledError:
            exchange.close("stopped")  # the worker cancelled before the response came
            raise
        except BaseException:
            exchange.close("failed")
            raise


async def _upload(request: Request, exchange: Exchange, size: int | None) -> AsyncIterator[bytes]:
    """The request body: the request's data, then the worker's items, pulled one at a time
    (a pull frees one credit of the worker's upload: aiohttp asks for the next chunk once
    the last one was written and its connection drained).

    A refusal is kept on the exchange (aiohttp reports only that the body failed), so the
    worker hears why.
    """
    limits = exchange.limits
    inbound = request.inbound
    assert inbound is not None
    most = size if size is not None else limits.max_request_body
    try:
        async for piece in _first_then(request.data, inbound):
            data = piece.data
            if not data:
                continue
            exchange.sent += len(data)
            if exchange.sent > most:
                what = f"the {size} bytes announced" if size is not None else f"{most} bytes (--endpoint-max-request)"
                raise _refuse(f"the request body is larger than {what}")
            exchange.progressed()
            yield data
            exchange.progressed()
        if size is not None and exchange.sent != size:
            raise _refuse(f"the request body ended at {exchange.sent} of the {size} bytes announced", ErrorCode.INVALID)
    except ApplicationError as exc:
        exchange.upload_error = exc
        raise
    except RxChannelError as exc:
        exchange.upload_error = ApplicationError(f"the worker's upload failed: {exc}", ErrorCode.CANCELED)
        raise
    exchange.body_sent()


def _table(endpoints: Mapping[str, str | Endpoint] | Iterable[Endpoint] | None) -> dict[str, Endpoint]:
    items: Iterable[Endpoint]
    if endpoints is None:
        items = ()
    elif isinstance(endpoints, Mapping):
        items = [v if isinstance(v, Endpoint) else Endpoint(k, v) for k, v in endpoints.items()]
    else:
        items = endpoints
    table: dict[str, Endpoint] = {}
    for endpoint in items:
        if endpoint.name in table:
            raise ValueError(f"endpoint {endpoint.name!r} is configured twice")
        table[endpoint.name] = endpoint
    return table


async def _first_then(first: bytes, rest: RemoteStream) -> AsyncIterator[Payload]:
    if first:
        yield Payload(first)
    async for item in rest:
        yield item


def _log(exchange: Exchange) -> None:
    response = exchange.response
    seconds = time.monotonic() - exchange.started
    status = response.status if response is not None else None
    log.info(
        "endpoint %s: %s %s for %s: %s, %d bytes up, %d down in %.2f s (%s)",
        exchange.endpoint.name,
        exchange.method,
        exchange.path[:200] or "/",
        exchange.remote,
        status if status is not None else "no response",
        exchange.sent,
        exchange.taken,
        seconds,
        exchange.outcome,
        extra={
            "event": "endpoint",
            "fields": {
                "endpoint": exchange.endpoint.name,
                "method": exchange.method,
                "path": exchange.path[:200],
                "remote": exchange.remote,
                "status": status,
                "sent": exchange.sent,
                "bytes": exchange.taken,
                "seconds": round(seconds, 3),
                "outcome": exchange.outcome,
            },
        },
    )
