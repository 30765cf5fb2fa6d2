"""What an endpoint is: its name and upstream (:class:`Endpoint`), the limits of one exchange
(:class:`EndpointLimits`), the header lists and the error code (:mod:`.endpoints` has the routes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from yarl import URL

from rxchannel.core import ENDPOINT_FAILED
from rxchannel.files._common import CHUNK_SIZE

__all__ = [
    "ENDPOINT_FAILED",
    "HOP_BY_HOP",
    "METHODS",
    "REQUEST_HEADERS",
    "RESPONSE_HEADERS",
    "Endpoint",
    "EndpointLimits",
    "parse_endpoint",
]


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
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
