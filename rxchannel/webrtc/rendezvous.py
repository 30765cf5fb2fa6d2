"""A rendezvous: signaling for hubs that have no inbound port (a laptop behind a home router).

A hub dials *out* to the rendezvous and holds one WebSocket there, registered under a name;
workers and pages use ``http://RENDEZVOUS/hubs/NAME`` wherever they would use the hub's own
URL. The rendezvous relays their HTTP requests (``GET /ice-servers``, ``POST /offer``, the
worker page and its modules, ``POST /report``) over that WebSocket, and the hub answers
them with its own listener, exactly as if they had come to its port: the same signatures,
rate limits and caps, and the hub's ICE servers and minted TURN credentials. Offers and
answers are relayed; data never is (ICE finds a path: host or reflexive candidates through
the NATs, TURN as the last resort). A rendezvous that goes away leaves the transfers
running; a hub re-registers when it is back.

**Registration.** ``GET /register/NAME/ID`` upgraded to a WebSocket, signed with the
rendezvous's secret like a signaling request (:mod:`.offers`): only hubs that know it may
register. ``ID`` is the hub process's random identity: a name held by a live hub is never
taken over by another (409); the same hub coming back (its old connection not noticed
dead yet) replaces its own registration.

**The relay.** ``/hubs/NAME/<path>`` (any method): checked first (rate per client address,
body size, requests pending per hub), then sent to the hub as a JSON message
``{"id", "method", "path", "query", "headers", "body", "client"}`` (``body`` in base64,
``client`` the worker's address); the hub's answer ``{"id", "status", "headers", "body"}``
comes back within ``relay_timeout`` or the worker gets 504. ``/hubs/NAME/rsocket`` answers
404 at once: there is no direct path through a rendezvous (a worker with ``--via auto``
takes WebRTC). The rendezvous's own refusals carry ``Rxchannel-Transport: rendezvous`` and
``Rxchannel-Refusal: <why>``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from rxchannel.core import ConnectFailedError
from rxchannel.transports import KIND_HEADER, ListenLimits
from rxchannel.transports.admission import ASKED, Admission, ThrottledLog
from rxchannel.transports.http import (
    PROCESS_HEADER,
    REFUSAL_HEADER,
    RELAY_HEADER,
    HttpListener,
    RequestRefusedError,
    client_of,
)
from rxchannel.transports.registry import RENDEZVOUS_PATH

from .offers import AddressRateLimiter, RequestAuth, sign_request

__all__ = [
    "NAME",
    "RendezvousLimits",
    "RendezvousLink",
    "RendezvousRefusedError",
    "RendezvousServer",
    "hub_name",
    "serve_rendezvous",
]

log = logging.getLogger("rxchannel.rendezvous")

#: What a hub name may be.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
#: Request headers relayed to the hub, and response headers relayed back (nothing else crosses).
_TO_HUB = ("Authorization", "Content-Type", "Accept", PROCESS_HEADER)
_FROM_HUB = (
    "Content-Type",
    "Cache-Control",
    "Retry-After",
    KIND_HEADER,
    REFUSAL_HEADER,
    PROCESS_HEADER,
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Referrer-Policy",
)


def hub_name(url: str) -> str | None:
    """The NAME of ``http://rendezvous/hubs/NAME``, or None for any other URL."""
    match = RENDEZVOUS_PATH.match(urlsplit(url).path)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RendezvousLimits:
    """What a rendezvous admits; each refusal names its limit.

    Attributes:
        max_hubs: hubs registered at once.
        request_rate, request_burst: relayed requests per second per client address (and at once).
        max_body: largest request body relayed to a hub (an offer is a few KiB).
        max_response: largest answer accepted from a hub (the page's largest module is ~30 KiB).
        max_pending: relayed requests awaiting one hub's answer at once. When they are all
            taken, a request from an address with fewer of them takes the place of one from
            the address holding the most, the oldest first (so many addresses flooding one hub cannot lock
            out a worker from another).
        max_pending_per_address: of those, how many one client address may have.
        relay_timeout: seconds a hub has to answer a relayed request (then 504).
    """

    max_hubs: int = 1024
    request_rate: float = 10.0
    request_burst: int = 40
    max_body: int = 256 * 1024
    max_response: int = 2 << 20
    max_pending: int = 64
    max_pending_per_address: int = 4
    relay_timeout: float = 10.0


class _Registered:
    """A hub holding its name: its WebSocket and the requests waiting for its answers, admitted
    through an :class:`~rxchannel.transports.admission.Admission` (the one mechanism the
    hub's own caps use): when they are all taken, a newcomer takes the place of the oldest
    request of the address with the most waiting."""

    def __init__(self, ws: web.WebSocketResponse, hub_id: str, name: str, limits: RendezvousLimits):
        self.ws = ws
        self.hub_id = hub_id
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.admission = Admission(
            f"requests waiting for hub {name!r}",
            ThrottledLog(log),
            limit=limits.max_pending,
            per_key=limits.max_pending_per_address,
            same_key_evicts=False,
            grace=0.0,
        )
        self.served = 0

    @property
    def evicted(self) -> int:
        """Requests dropped to make room for one from an address with fewer waiting."""
        return sum(self.admission.evicted.values())


class _EvictedError(Exception):
    """A relayed request dropped to make room for one from an address with fewer waiting."""


class RendezvousServer:
    """The rendezvous's HTTP application (:func:`serve_rendezvous` runs it).

    Attributes:
        hubs: the hubs registered now, by name.
        refused: refusals by HTTP status (what floods and squatters cost).
    """

    def __init__(self, secret: str, *, limits: RendezvousLimits | None = None, listen: ListenLimits | None = None):
        if not secret:
            raise ValueError("a rendezvous needs a secret: only hubs that know it may register")
        self.limits = limits or RendezvousLimits()
        self.listener = HttpListener("http", kind="rendezvous", limits=listen, client_max_size=self.limits.max_body)
        self.auth = RequestAuth(secret)
        self.rate = AddressRateLimiter(self.limits.request_rate, self.limits.request_burst)
        self.hubs: dict[str, _Registered] = {}
        self.refused: dict[int, int] = {}
        self._ids = iter(range(1, 1 << 62))
        app = self.listener.app
        app.router.add_get("/register/{name}/{hub_id}", self._register)
        app.router.add_route("*", "/hubs/{name}", self._relay)
        app.router.add_route("*", "/hubs/{name}/{tail:.*}", self._relay)
        app.on_shutdown.append(self._shutdown)

    @property
    def url(self) -> str:
        return self.listener.url

    def _refuse(self, status: int, message: str, *, retry_after: float | None = None) -> web.Response:
        self.refused[status] = self.refused.get(status, 0) + 1
        headers = {KIND_HEADER: "rendezvous", REFUSAL_HEADER: message.encode("ascii", "replace").decode()}
        if retry_after:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        return web.json_response({"error": message, "status": status}, status=status, headers=headers)

    async def _register(self, request: web.Request) -> web.StreamResponse:
        name, hub_id = request.match_info["name"], request.match_info["hub_id"]
        if not NAME.match(name) or not _ID.match(hub_id):
            return self._refuse(
                400, "a hub name is 1-63 letters, digits, '.', '_' or '-', starting with one of the first two"
            )
        try:
            self.auth.check(request.headers.get("Authorization"), "GET", request.path, b"", time.time())
        except RequestRefusedError as exc:
            log.warning("refused to register %r from %s: %s", name, client_of(request), exc.message)
            return self._refuse(401, f"{exc.message} (the hub's --rendezvous-secret must be the rendezvous's --secret)")
        held = self.hubs.get(name)
        if held is not None and held.hub_id != hub_id and not held.ws.closed:
            return self._refuse(409, f"the name {name!r} is taken by another hub: choose another --name")
        if held is None and len(self.hubs) >= self.limits.max_hubs:
            return self._refuse(503, f"{len(self.hubs)} hubs are registered (limit {self.limits.max_hubs})")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=self.limits.max_response * 2)
        await ws.prepare(request)
        if held is not None:  # the same hub again: its old connection is dead or dying
            self._unregister(name, held, "replaced by the same hub's new connection")
            await held.ws.close()
        self.listener.proven(request)  # it knows the secret: never evicted for newcomers
        mine = self.hubs[name] = _Registered(ws, hub_id, name, self.limits)
        log.info("hub %r registered from %s", name, client_of(request), extra={"event": "rendezvous.registered"})
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    answer = json.loads(message.data)
                    waiter = mine.pending.pop(int(answer["id"]), None)
                except (ValueError, KeyError, TypeError):
                    log.warning("hub %r sent a malformed answer; dropping it", name)
                    break
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        finally:
            if self.hubs.get(name) is mine:
                self._unregister(name, mine, "its connection closed")
        return ws

    def _unregister(self, name: str, hub: _Registered, why: str) -> None:
        if self.hubs.get(name) is hub:
            del self.hubs[name]
        for waiter in hub.pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"the hub {name!r} went away"))
        hub.pending.clear()
        log.info("hub %r unregistered: %s", name, why, extra={"event": "rendezvous.unregistered"})

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        name, tail = request.match_info["name"], request.match_info.get("tail")
        client = client_of(request)
        wait = self.rate.take(client, asyncio.get_running_loop().time())
        if wait is not None:
            return self._refuse(
                429, f"too many requests from {client}: the limit is {self.limits.request_rate:g}/s", retry_after=wait
            )
        if tail is None:
            if request.method == "GET":  # the page: relative links resolve under /hubs/NAME/
                raise web.HTTPPermanentRedirect(f"/hubs/{name}/", headers={KIND_HEADER: "rendezvous"})
            tail = ""
        if tail.rstrip("/") == "rsocket":
            return self._refuse(
                404, "a rendezvous relays signaling only: there is no direct path through it (use WebRTC)"
            )
        hub = self.hubs.get(name)
        if hub is None:
            return self._refuse(
                404,
                f"no hub named {name!r} is registered at this rendezvous: is it running with "
                f"'rxchannel serve ROOT --rendezvous {self.url} --name {name}'?",
            )
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def evict(_reason: str) -> None:
            if not waiter.done():
                waiter.set_exception(_EvictedError())

        ticket = hub.admission.admit(client, evict, rank=ASKED)
        if ticket is None:
            if hub.admission.last_cap == "key":
                return self._refuse(
                    429,
                    f"{client} has {self.limits.max_pending_per_address} requests waiting for {name!r}",
                    retry_after=1,
                )
            return self._refuse(
                503, f"the hub {name!r} has {hub.admission.total} requests waiting: try again", retry_after=2
            )
        try:
            return await self._relayed(request, hub, name, tail, client, waiter)
        finally:
            ticket.leave()

    async def _relayed(
        self,
        request: web.Request,
        hub: _Registered,
        name: str,
        tail: str,
        client: str,
        waiter: asyncio.Future[dict[str, Any]],
    ) -> web.StreamResponse:
        try:
            body = await self.listener.read_body(request, self.limits.max_body)
        except RequestRefusedError as exc:
            return self._refuse(exc.status, exc.message)
        if waiter.done():  # evicted while its body arrived
            return self._refuse(
                503, f"the hub {name!r} is busy with requests from many addresses: try again", retry_after=2
            )
        ident = next(self._ids)
        hub.pending[ident] = waiter
        message = {
            "id": ident,
            "method": request.method,
            "path": "/" + tail,
            "query": request.query_string,
            "signed": request.path,
            "headers": {k: request.headers[k] for k in _TO_HUB if k in request.headers},
            "body": base64.b64encode(body).decode(),
            "client": client,
        }
        try:
            await hub.ws.send_str(json.dumps(message))
            async with asyncio.timeout(self.limits.relay_timeout):
                answer = await waiter
        except TimeoutError:
            return self._refuse(504, f"the hub {name!r} did not answer within {self.limits.relay_timeout:g} s")
        except (ConnectionError, RuntimeError):
            return self._refuse(502, f"the hub {name!r} went away before it answered: try again")
        except _EvictedError:
            return self._refuse(
                503, f"the hub {name!r} is busy with requests from many addresses: try again", retry_after=2
            )
        finally:
            hub.pending.pop(ident, None)
        hub.served += 1
        try:
            status = int(answer["status"])
            content = base64.b64decode(answer.get("body", ""))
            headers = {k: str(v) for k, v in dict(answer.get("headers", {})).items() if k in _FROM_HUB}
        except (ValueError, TypeError, KeyError):
            return self._refuse(502, f"the hub {name!r} answered with something that is not an answer")
        if not 100 <= status <= 599 or len(content) > self.limits.max_response:
            return self._refuse(502, f"the hub {name!r} answered with something that is not an answer")
        return web.Response(status=status, body=content, headers=headers)

    async def _shutdown(self, _app: web.Application) -> None:
        for hub in list(self.hubs.values()):
            await hub.ws.close()


async def serve_rendezvous(
    secret: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: RendezvousLimits | None = None,
    listen: ListenLimits | None = None,
) -> RendezvousServer:
    """Run a rendezvous on ``host:port`` (port 0 picks a free one); close it with ``server.listener.close()``.

    Raises:
        ValueError: no secret.
        OSError: the address cannot be bound.
    """
    server = RendezvousServer(secret, limits=limits, listen=listen)
    await server.listener.start(host, port)
    return server


class RendezvousRefusedError(ConnectFailedError):
    """The rendezvous refused the hub's registration (a wrong secret, a name taken: :attr:`status`)."""

    status: int


class RendezvousLink:
    """A hub's registration at a rendezvous: dial out, hold the WebSocket, answer what it relays.

    A relayed request is answered by the hub's own listener at ``local`` (its HTTP base,
    ``http://host:port``), marked with ``relay`` (its :attr:`~.HttpListener.relay_token`)
    so that the listener counts it against the worker's address and checks the signature
    against the path the worker signed. The link re-registers, with a growing pause, until
    it is closed; :meth:`start` waits for the first registration.

    Args:
        url: the rendezvous (``http://R:P``).
        name: the name to register (workers dial ``url/hubs/name``).
        secret: the rendezvous's secret.
    """

    def __init__(self, url: str, name: str, secret: str, *, local: str, relay: str, max_concurrent: int = 32):
        if not NAME.match(name):
            raise ValueError(f"{name!r} is not a hub name: use 1-63 letters, digits, '.', '_' or '-'")
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not a rendezvous URL: use http://HOST:PORT")
        self.url = url.rstrip("/")
        self.name = name
        self.secret = secret
        self.local = local.rstrip("/")
        self.relay = relay
        self.hub_id = secrets.token_urlsafe(16)
        self.public_url = f"{self.url}/hubs/{name}"
        self.registrations = 0
        self.relayed = 0
        self.on_change: Callable[[str], object] | None = None
        self._register_path = f"/register/{name}/{self.hub_id}"
        self._ws_url = urlunsplit(
            ("wss" if parts.scheme == "https" else "ws", parts.netloc, self._register_path, "", "")
        )
        self._limit = asyncio.Semaphore(max_concurrent)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, timeout: float = 10.0) -> None:
        """Register, and keep the registration up in the background.

        Raises:
            RendezvousRefusedError: the rendezvous refused us (wrong secret: 401; name taken: 409).
            ConnectionError: the rendezvous cannot be reached (the message says so).
        """
        self._session = aiohttp.ClientSession()
        self._first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._first)
        except TimeoutError:
            await self.close()
            raise ConnectionError(f"the rendezvous at {self.url} did not answer within {timeout:g} s") from None
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        headers = {"Authorization": sign_request(self.secret, "GET", self._register_path, b"", time.time())}
        try:
            return await self._session.ws_connect(self._ws_url, headers=headers, heartbeat=10.0, max_msg_size=1 << 20)
        except aiohttp.WSServerHandshakeError as exc:
            reason = (exc.headers.get(REFUSAL_HEADER) if exc.headers else None) or exc.message
            raise RendezvousRefusedError(
                f"the rendezvous at {self.url} refused the hub ({exc.status}): {reason}", exc.status
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionError(f"cannot reach the rendezvous at {self.url}: {exc}") from None

    async def _run(self) -> None:
        assert self._first is not None
        pause = 0.5
        while True:
            try:
                ws = await self._connect()
            except (RendezvousRefusedError, ConnectionError) as exc:
                if not self._first.done():
                    self._first.set_exception(exc)
                    return
                log.warning("%s; trying again in %.0f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                continue
            pause = 0.5
            self.registrations += 1
            log.info("registered at %s as %r: workers dial %s", self.url, self.name, self.public_url)
            if not self._first.done():
                self._first.set_result(None)
            if self.on_change is not None:
                self.on_change("registered")
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    task = asyncio.create_task(self._answer(ws, message.data))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            log.warning("the rendezvous at %s closed our registration; registering again", self.url)
            if self.on_change is not None:
                self.on_change("lost")

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        assert self._session is not None
        try:
            asked = json.loads(text)
            ident = int(asked["id"])
            method, path, query = str(asked["method"]), str(asked["path"]), str(asked.get("query", ""))
            body = base64.b64decode(asked.get("body", ""))
            headers = {str(k): str(v) for k, v in dict(asked.get("headers", {})).items() if k in _TO_HUB}
            client, signed = str(asked.get("client", "")), str(asked.get("signed", path))
        except (ValueError, KeyError, TypeError):
            log.warning("the rendezvous relayed a malformed request; ignored")
            return
        if not path.startswith("/") or " " in client or " " in signed:
            return
        headers[RELAY_HEADER] = f"{self.relay} {client or '?'} {signed}"
        target = self.local + path + (f"?{query}" if query else "")
        async with self._limit:
            try:
                async with self._session.request(method, target, data=body or None, headers=headers) as response:
                    content = await response.read()
                    answer = {
                        "id": ident,
                        "status": response.status,
                        "headers": {k: v for k, v in response.headers.items() if k in _FROM_HUB},
                        "body": base64.b64encode(content).decode(),
                    }
            except (aiohttp.ClientError, OSError) as exc:
                answer = {
                    "id": ident,
                    "status": 502,
                    "headers": {},
                    "body": base64.b64encode(str(exc).encode()).decode(),
                }
        self.relayed += 1
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await ws.send_str(json.dumps(answer))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
