"""Keeping a peer's streams across transports: session resumption in the runtime (issue 17).

The protocol part (positions, the store, RESUME/RESUME_OK) is the core's
(:mod:`rxchannel.core._resume`). This module decides *when*: a resumable peer whose
transport breaks (an error, an EOF, or no frame within the keepalive lifetime) keeps its
streams open, swaps in :class:`Gone` (not writable: producers wait), and

* as a client re-dials (for WebRTC a new signaling exchange and a new peer connection; for
  TCP and WebSocket a new connection) with a growing pause between attempts, sends RESUME
  and carries on where both sides left off;
* as a server waits for the client's RESUME, which arrives on a *new* connection and is
  handed to the session by :class:`~rxchannel.runtime.Server`.

Only past ``resume_session_timeout`` do the streams fail, with :class:`ConnectionLostError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from rxchannel.core import MAX_FRAME_SIZE, Connection, ConnectionLostError, ResumeFrame, RxChannelError
from rxchannel.transports import Transport, TransportLimits

__all__ = ["Gone", "Redial", "ResumablePeer", "Resumption", "SessionHost"]

log = logging.getLogger("rxchannel.resume")

#: Opens a new transport to the same peer (a client's re-dial).
Redial = Callable[[], Awaitable[Transport]]
#: Pauses between re-dial attempts, in seconds (the last one repeats).
BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)


class ResumablePeer(Protocol):
    """What :class:`Resumption` needs of its :class:`~rxchannel.runtime.Peer`."""

    transport: Transport
    _loop: asyncio.AbstractEventLoop

    @property
    def connection(self) -> Connection: ...
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]: ...
    def _attach(self, transport: Transport) -> None: ...
    def _process_events(self) -> None: ...


class SessionHost(Protocol):
    """Where a server peer's RESUME goes: the table of sessions (a :class:`~rxchannel.runtime.Server`)."""

    def resume(self, fresh: Any, frame: ResumeFrame) -> bool: ...


class Gone(Transport):
    """Stands in for a transport while a session waits to be resumed: never writable, writes
    nothing (the core keeps what is sent in its store), and wakes those waiting for room
    once a new transport is attached."""

    max_message_size = MAX_FRAME_SIZE
    remote = "(reconnecting)"

    def __init__(self, limits: TransportLimits):
        super().__init__(limits)
        self._back = asyncio.Event()

    @property
    def buffered_amount(self) -> int:
        return 0

    @property
    def writable(self) -> bool:
        return False

    def _write(self, frames: list[bytes]) -> None:
        pass

    def write(self, frames: list[bytes]) -> None:
        pass

    async def drain(self) -> None:
        await self._back.wait()

    def back(self) -> None:
        """A transport is attached again: wake whoever waits for room here (they look again)."""
        self._back.set()

    async def receive(self) -> list[bytes]:
        await asyncio.Event().wait()  # never: nobody reads a transport that is gone
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._back.set()

    def abort(self) -> None:
        self._back.set()


class Resumption:
    """The resumption side of one resumable :class:`~rxchannel.runtime.Peer`.

    Attributes:
        reconnects: how many times the session was resumed on a new transport.
        on_change: called with ``"reconnecting"`` when the transport is lost and
            ``"resumed"`` when a new one carries the session (the CLI's progress bar).
    """

    def __init__(self, peer: ResumablePeer, redial: Redial | None, *, attempt_timeout: float = 20.0):
        self.peer = peer
        self.redial = redial
        self.attempt_timeout = attempt_timeout
        self.reconnects = 0
        self.on_change: Callable[[str], object] | None = None
        self._resumed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost_at = 0.0

    def lost(self, reason: str) -> None:
        """The transport broke (``reason``): keep the streams, and re-dial if we are the client."""
        peer = self.peer
        if peer.connection.closed:
            return
        if not peer.connection.detached:
            peer.connection.detach(peer._loop.time())
        old = peer.transport
        if not isinstance(old, Gone):
            peer.transport = Gone(old.limits)
            old.abort()
            self._lost_at = time.monotonic()
            log.info(
                "the connection to %s broke (%s); %s",
                old.remote,
                reason,
                "reconnecting" if self.redial else "keeping its session to be resumed",
                extra={"event": "session.detached", "fields": {"remote": old.remote, "reason": reason}},
            )
            if self.on_change is not None:
                self.on_change("reconnecting")
        if self.redial is not None and (self._task is None or self._task.done()):
            self._task = peer._spawn(self._reconnect())

    def resumed(self, resumes: int) -> None:
        """The core resumed the session (RESUME_OK received, or a RESUME accepted)."""
        self.reconnects = resumes
        if self._resumed is not None:
            self._resumed.set()
        log.info(
            "resumed the session with %s after %.1f s (%d so far)",
            self.peer.transport.remote,
            time.monotonic() - self._lost_at,
            resumes,
            extra={"event": "session.resumed", "fields": {"remote": self.peer.transport.remote, "resumes": resumes}},
        )
        if self.on_change is not None:
            self.on_change("resumed")

    async def _reconnect(self) -> None:
        peer, attempt = self.peer, 0
        assert self.redial is not None
        while not peer.connection.closed:
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    transport = await self.redial()
            except ConnectionRefusedError as exc:
                # the host answers and nothing listens: the server process is gone, and its
                # sessions with it (a restarted one would refuse the RESUME): give up now
                peer.connection.connection_lost(ConnectionLostError(f"the server is not running any more: {exc}"))
                peer._process_events()
                return
            except (OSError, RxChannelError, TimeoutError, ValueError) as exc:
                log.debug("re-dial failed: %s", exc)
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                attempt += 1
                continue
            if peer.connection.closed:
                transport.abort()
                return
            self._resumed = asyncio.Event()
            peer.connection.start_resume(peer._loop.time())
            peer._attach(transport)
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    await self._resumed.wait()
                return
            except TimeoutError:  # the new transport said nothing: drop it and try again
                if not peer.connection.closed:
                    self.lost(f"no answer to RESUME within {self.attempt_timeout:g} s")
                return

    def adopt(self, transport: Transport, frame: ResumeFrame) -> str | None:
        """Server: carry on on ``transport``, which sent ``frame``; returns why not, or None."""
        peer = self.peer
        reason = peer.connection.accept_resume(frame, peer._loop.time())
        if reason is not None:
            peer._process_events()
            return reason
        old = peer.transport
        peer._attach(transport)
        if not isinstance(old, Gone):
            old.abort()  # the client noticed the break before we did
        peer._process_events()
        return None
