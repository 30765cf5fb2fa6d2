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

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping

from rxchannel.core import ApplicationError, ErrorCode, RxChannelError, request_metadata
from rxchannel.runtime import Payload, RemoteStream, Request, Router

from ._endpoint_config import *  # noqa: F403 (what an endpoint is: its names are served from here too)
from ._endpoint_config import METHODS, Endpoint, EndpointLimits
from ._endpoint_config import __all__ as _config_names
from ._endpoint_rules import refuse, request_headers, response_headers, upstream_url
from ._exchange import Ask, EndpointBody, Exchange

__all__ = [*_config_names, "EndpointBody", "EndpointRoutes", "Exchange", "response_headers", "upstream_url"]

log = logging.getLogger("rxchannel.hub")


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

    def _ask(self, request: Request, *, streamed: bool) -> tuple[Endpoint, Ask]:
        route = (request.route or "")[len("endpoints/") :]
        name, _, rest = route.partition("/")
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            known = ", ".join(sorted(self.endpoints)) or "none"
            raise refuse(f"no endpoint named {name[:80]!r} on this hub (it has: {known[:300]})")
        info = request.info
        method = info.get("method", "POST" if streamed else "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise refuse(f"method {str(method)[:20]!r} is not allowed: use one of {', '.join(sorted(METHODS))}")
        size = info.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise refuse('"size" must be the body\'s length in bytes', ErrorCode.INVALID)
        body = (size if size is not None else 0) if streamed else len(request.data)
        if body > self.limits.max_request_body:
            raise refuse(
                f"the request body is {body} bytes; endpoints take at most {self.limits.max_request_body} "
                "(--endpoint-max-request)"
            )
        url = upstream_url(endpoint, rest, info.get("query"))
        headers = request_headers(endpoint, info.get("headers"))
        if size is not None:
            headers["Content-Length"] = str(size)
        return endpoint, Ask(method.upper(), url, headers, size, rest)

    def _start(self, request: Request, endpoint: Endpoint, ask: Ask) -> Exchange:
        """Count the exchange in (released when the stream is over) or refuse it."""
        limits, peer = self.limits, id(request.peer)
        if len(self.exchanges) >= limits.max_exchanges:
            raise refuse(
                f"the hub has {len(self.exchanges)} endpoint requests under way (limit {limits.max_exchanges}): "
                "try again shortly"
            )
        if self._by_peer[peer] >= limits.max_exchanges_per_connection:
            raise refuse(
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
            raise refuse(f"the response is {size} bytes; a request-response holds at most {limit}: stream it instead")
        parts: list[bytes] = []
        info = exchange.info()
        try:
            while not exchange.empty() and (data := await exchange.read()):
                parts.append(data)
                if exchange.taken > limit:
                    raise refuse(
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
                raise refuse(f"the request body is larger than {what}")
            exchange.progressed()
            yield data
            exchange.progressed()
        if size is not None and exchange.sent != size:
            raise refuse(f"the request body ended at {exchange.sent} of the {size} bytes announced", ErrorCode.INVALID)
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
