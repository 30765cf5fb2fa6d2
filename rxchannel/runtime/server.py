"""Serving a router and dialing a peer, by URL over any transport.

URL schemes (docs/architecture.md, "URLs and exit codes"): ``http://host:port`` (WebRTC DataChannel, HTTP offer/answer
signaling at ``POST /offer``), ``ws://host:port/rsocket`` (WebSocket) and
``tcp://host:port``; the transport registry (:mod:`rxchannel.transports.registry`) maps
them to transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import time
from typing import Any

from rxchannel.core import (
    CLOSED_BY_PEER,
    MAX_FRAME_SIZE,
    SETUP_REFUSALS,
    ConnectionConfig,
    ConnectionLostError,
    ErrorCode,
    RemoteError,
    RemoteProtocolError,
    ResumeFrame,
    Role,
    RxChannelError,
    SetupFrame,
    SetupRejectedError,
    make_token,
    setup_refusal,
)
from rxchannel.transports import Listener, ListenLimits, Transport, TransportOptions, dial, listen
from rxchannel.transports.admission import PROVEN, SILENT, Admission, ThrottledLog

from .peer import Peer
from .router import Router

__all__ = ["Server", "connect", "connect_tcp", "largest_frame", "serve", "serve_tcp"]

#: Connections and refused logins, one line each (events ``connection.open``/``close``/``refused``).
log = logging.getLogger("rxchannel.server")


def largest_frame(config: ConnectionConfig | None) -> int:
    """The largest frame worth accepting under ``config``: one whole item plus its metadata.

    A peer announcing more is refused before anything is buffered, so it cannot make us
    hold 16 MiB per connection when our items are small.
    """
    config = config or ConnectionConfig()
    return min(MAX_FRAME_SIZE, config.max_payload_size + config.max_metadata_size + 64)


#: the reasons of a connection that ended as connections should (``connection.close`` says so)
_NORMAL = ("closed by the peer", "closed by this side")


def _why_closed(error: RxChannelError | None) -> str:
    """Why a served connection ended, in the words of the hub's log: a client that closed on
    purpose (its ERROR[CONNECTION_ERROR] "closed" before a resumable session's end, or the
    transport's orderly end) is ``closed by the peer``, not an error."""
    if error is None:
        return "closed by this side"
    if isinstance(error, RemoteError) and error.code == ErrorCode.CONNECTION_ERROR and error.message == CLOSED_BY_PEER:
        return "closed by the peer"
    if type(error) is ConnectionLostError and str(error) == CLOSED_BY_PEER:
        return "closed by the peer"
    return str(error)


def _unique_token(server: Server, check: Any) -> Any:
    def checked(setup: SetupFrame) -> str | None:
        if setup.resume_token is not None and server.session(bytes(setup.resume_token)) is not None:
            return "this resume token belongs to a live session: a SETUP must bring a new one"
        return check(setup) if check is not None else None

    return checked


def _options(options: TransportOptions | None, config: ConnectionConfig | None) -> TransportOptions:
    return dataclasses.replace(options or TransportOptions(), max_message_size=largest_frame(config))


#: seconds a proven connection that made requests must have had none, and no stream open,
#: before it may make room for a newly proven one when every place is taken by proven
#: connections (one that never made a request may at once: oldest first)
IDLE_GRACE = 1.0


class Server:
    """Accepts transports and runs one server-role :class:`Peer` per connection.

    ``max_peers`` caps the open connections that no listener admitted (a WebRTC connection
    arrives through signaling, so this is its cap; TCP and WebSocket listeners admit their
    own sockets under the same limits), through
    an :class:`~rxchannel.transports.admission.Admission`: when it is full, a newcomer
    evicts a connection that has not sent its SETUP (the oldest, from the address with the
    most), and one that has sent none within ``limits.setup_timeout`` (shorter as the cap
    fills) is closed; with every place proven, a newcomer waits in the headroom until its
    SETUP, then the oldest idle connection makes room for it. A connection is logged
    (``connection.open``) once its SETUP is accepted: one that never proves itself costs
    the log nothing but the admission's throttled lines.
    """

    def __init__(
        self,
        router: Router,
        config: ConnectionConfig | None = None,
        *,
        max_peers: int = 256,
        limits: ListenLimits | None = None,
    ):
        if max_peers <= 0:
            raise ValueError("max_peers must be positive")
        limits = limits or ListenLimits(max_connections=max_peers)
        self.router = router
        if config is not None and config.resumable:
            # a SETUP may not take a resume token a live session already has (Protocol.md, tokens)
            config = dataclasses.replace(config, setup_check=_unique_token(self, config.setup_check))
        self.config = config
        self.max_peers = max_peers
        self.peers: set[Peer] = set()
        self.admission = Admission(
            "connections",
            ThrottledLog(log),
            limit=max_peers,
            headroom=limits.spare,
            deadlines={SILENT: (limits.setup_timeout, "sent no SETUP")},
            floor=limits.pressure_floor,
            limit_hint=": --max-connections",
        )
        self.listener: Listener | None = None
        #: the kind of transport served (for logs)
        self.kind = "?"

    @property
    def refused(self) -> int:
        """Connections refused for lack of room."""
        return self.admission.refused

    def accept(self, transport: Transport) -> Peer | None:
        """Run a server-role peer on an accepted transport (any kind); None if it is refused
        (every place taken by a proven connection, see the class docstring)."""
        address = transport.remote.rsplit(":", 1)[0] if transport.remote.count(":") == 1 else transport.remote
        evicted: list[Peer] = []
        ticket = None
        if transport.tickets:
            pass  # its listener admitted it (TCP, WebSocket): that cap is this one, and one eviction is enough
        elif (ticket := self.admission.admit(address, lambda reason: self._evict(evicted, transport, reason))) is None:
            reason = f"the hub is busy: {self.admission.last_refusal}; try again later"
            try:  # say why (an RSocket client reads it as a refused SETUP), then close
                transport.write([setup_refusal(reason)])
            except RxChannelError:
                transport.abort()
                return None
            asyncio.get_running_loop().create_task(transport.close())
            return None
        if ticket is not None:
            transport.tickets.append(ticket)
        peer = Peer(transport, Role.SERVER, router=self.router, config=self.config, host=self)
        evicted.append(peer)
        self.peers.add(peer)
        remote, opened = transport.remote, time.monotonic()
        path = transport.path + (f", {transport.stack}" if transport.stack else "")
        fields = {"remote": remote, "transport": self.kind, "path": transport.path, "stack": transport.stack}
        logged = [False]

        def proven(_peer: Peer) -> None:
            logged[0] = True
            log.info("connection from %s (%s)", remote, path, extra={"event": "connection.open", "fields": fields})

        peer.on_setup = proven
        loop = asyncio.get_running_loop()

        def idle() -> bool:
            if peer.connection.open_streams:
                return False
            return peer.requests == 0 or loop.time() - peer.last_request >= IDLE_GRACE

        peer.idle = idle

        def closed(future: asyncio.Future[RxChannelError | None]) -> None:
            self.peers.discard(peer)
            if ticket is not None:
                ticket.leave()
            error = None if future.cancelled() else future.result()
            fields = {"remote": remote, "transport": self.kind, "seconds": round(time.monotonic() - opened, 3)}
            if isinstance(error, RemoteProtocolError) and error.code in SETUP_REFUSALS:
                self.admission.log.warning(  # throttled: a flood of wrong secrets is not a flood of lines
                    "refused the connection from %s (%s): %s",
                    remote,
                    self.kind,
                    error,
                    extra={"event": "connection.refused", "fields": {**fields, "reason": str(error)}},
                )
                return
            if not logged[0]:
                return  # never proven: the admission counted (and logged, throttled) what it cost
            why = _why_closed(error)
            log.info(
                "connection from %s %s (%.1f s)" if why in _NORMAL else "connection from %s ended: %s (%.1f s)",
                remote,
                why,
                fields["seconds"],
                extra={"event": "connection.close", "fields": {**fields, "reason": why}},
            )

        peer.closed.add_done_callback(closed)
        return peer

    def _evict(self, peer: list[Peer], transport: Transport, reason: str) -> None:
        """Close a connection the admission evicted (it logged why); one without SETUP is told why."""
        if not peer or peer[0].setup is None:
            with contextlib.suppress(RxChannelError, ValueError):
                transport.write([setup_refusal(f"the hub is busy: this connection {reason}; try again")])
            asyncio.get_running_loop().create_task(transport.close())
        else:
            asyncio.get_running_loop().create_task(peer[0].close())

    def session(self, token: bytes) -> Peer | None:
        """The live peer whose session has resume ``token``, or None."""
        for peer in self.peers:
            mine = peer.connection.resume_token
            if mine is not None and not peer.connection.closed and hmac.compare_digest(mine, token):
                return peer
        return None

    def resume(self, fresh: Peer, frame: ResumeFrame) -> bool:
        """A new connection's RESUME: hand its transport to the session it names (see
        :mod:`.resumption`); False (and ERROR[REJECTED_RESUME] sent) when there is none or
        it cannot continue."""
        session = self.session(frame.token)
        remote = fresh.transport.remote
        reason: str | None = "no session with this token (it ended, or expired: connect again)"
        if session is not None and session is not fresh and session._resumption is not None:
            transport = fresh.transport
            reason = session._resumption.adopt(transport, frame)
            if reason is None:
                fresh._relinquish()
                transport.advance(PROVEN, session.idle)  # the session it carries proved itself
                return True
        log.warning(
            "refused to resume a session for %s: %s",
            remote,
            reason,
            extra={"event": "session.refused", "fields": {"remote": remote, "reason": reason}},
        )
        fresh.connection.refuse_resume(reason or "refused")
        fresh._flush()
        fresh._process_events()
        return False

    @property
    def url(self) -> str:
        """The URL to give to clients."""
        if self.listener is None:
            raise RuntimeError("the server is not listening")
        return self.listener.url

    @property
    def urls(self) -> list[str]:
        """Every URL clients can dial: one per address for a wildcard bind (0.0.0.0, ::), else one."""
        if self.listener is None:
            raise RuntimeError("the server is not listening")
        return list(self.listener.urls)

    @property
    def port(self) -> int:
        return int(getattr(self.listener, "port", 0))

    async def close(self) -> None:
        """Stop listening and close every connection; say what the admissions had to evict or refuse."""
        self.admission.close()
        listener = self.listener
        admissions = [self.admission] + [
            a
            for a in (
                getattr(listener, "admission", None),
                getattr(getattr(listener, "answerer", None), "admission", None),
            )
            if isinstance(a, Admission)
        ]
        for admission in admissions:
            if admission.evicted or admission.refused:
                log.warning("under pressure while it ran: %s", admission.summary(), extra={"event": "admission"})
        await asyncio.gather(*(peer.close() for peer in list(self.peers)), return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(
    router: Router,
    *,
    transport: str = "tcp",
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    options: TransportOptions | None = None,
) -> Server:
    """Serve ``router`` over ``transport`` (``webrtc``, ``ws`` or ``tcp``) on ``host:port``.

    Read ``server.url`` for the address to give out. Port 0 picks a free one. The
    connection cap is ``options.listen_limits.max_connections`` (256 by default).

    Raises:
        ValueError: an unknown transport.
        OSError: the address cannot be bound.
    """
    limits = (options.listen_limits if options is not None else None) or ListenLimits()
    server = Server(router, config, max_peers=limits.max_connections, limits=limits)
    server.kind = transport
    server.listener = await listen(transport, host, port, lambda t: server.accept(t), _options(options, config))
    return server


async def connect(
    url: str,
    *,
    router: Router | None = None,
    config: ConnectionConfig | None = None,
    options: TransportOptions | None = None,
    resume_timeout: float | None = None,
) -> Peer:
    """Dial ``url`` and return a client-role :class:`Peer` (its SETUP is on its way).

    With ``resume_timeout`` the session is resumable: if the transport breaks, the peer
    re-dials ``url`` and resumes for up to that many seconds while its streams wait
    (:mod:`.resumption`). This needs the server's answer to the SETUP first (one round
    trip); a server that does not resume sessions (rsocket-py, a hub without it) is
    dialed again without resumption, and a warning says so once.

    Raises:
        ValueError: an unsupported URL.
        ConnectionError / TimeoutError: the hub is unreachable.
        SetupRejectedError: the server refused the SETUP (e.g. the shared secret).
    """
    dial_options = _options(options, config)
    if resume_timeout is None:
        transport = await dial(url, dial_options)
        return Peer(transport, Role.CLIENT, router=router, config=config)
    base = config or ConnectionConfig()
    dial_options = dataclasses.replace(dial_options, affinity={})  # every re-dial of this session finds its process
    resumable = dataclasses.replace(
        base, resume_token=make_token(base.resume_secret), resume_session_timeout=resume_timeout
    )

    async def redial() -> Transport:
        return await dial(url, dial_options)

    peer = Peer(await redial(), Role.CLIENT, router=router, config=resumable, redial=redial)
    try:
        async with asyncio.timeout(dial_options.timeout):
            await asyncio.shield(peer.setup_confirmed)
        return peer
    except SetupRejectedError as exc:
        await peer.close()
        refusal = exc
    except TimeoutError:
        await peer.close()
        raise ConnectionError(f"{url} did not answer our SETUP within {dial_options.timeout:g} s") from None
    plain = await dial(url, dial_options)
    peer = Peer(plain, Role.CLIENT, router=router, config=config)
    _warn_no_resumption(url, refusal)
    return peer


_warned: set[str] = set()


def _warn_no_resumption(url: str, refusal: SetupRejectedError) -> None:
    if url not in _warned:
        _warned.add(url)
        log.warning(
            "%s does not resume sessions (%s): connected without resumption; a broken link ends this connection",
            url,
            refusal.message,
            extra={"event": "session.unsupported", "fields": {"url": url}},
        )


async def serve_tcp(
    router: Router, host: str = "127.0.0.1", port: int = 0, *, config: ConnectionConfig | None = None
) -> Server:
    """Listen for TCP connections on ``host:port`` (port 0 picks a free one; read ``server.port``)."""
    return await serve(router, transport="tcp", host=host, port=port, config=config)


async def connect_tcp(
    host: str, port: int, *, router: Router | None = None, config: ConnectionConfig | None = None
) -> Peer:
    """Dial ``host:port`` over TCP and return a client-role :class:`Peer`."""
    bracketed = f"[{host}]" if ":" in host else host
    return await connect(f"tcp://{bracketed}:{port}", router=router, config=config)
