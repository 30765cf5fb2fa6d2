"""What the runtime calls when a resumable connection loses its transport and resumes on a
new one (Protocol.md "Resume Operation"; the state is in :mod:`._resume`).

Client: :meth:`detach` when the transport breaks, then :meth:`start_resume` on each new
transport (queues RESUME; the answer arrives through ``receive``). Server: :meth:`detach`
likewise; a new connection whose first frame is RESUME emits ``ResumeReceived``, and the
runtime calls :meth:`accept_resume` on the session it names (or :meth:`refuse_resume` on
the new one).
"""

from __future__ import annotations

import hmac

from ._calls import LocalCalls
from ._config import Role
from ._errors import ConnectionLostError, ErrorCode, LocalProtocolError, RemoteProtocolError
from ._events import Resumed
from ._frames import ErrorFrame, ResumeFrame, ResumeOkFrame, encode_frame
from ._resume import SessionState

__all__ = ["ResumableCalls"]


class ResumableCalls(LocalCalls):
    """Resumption calls of a :class:`~rxchannel.core.Connection`."""

    @property
    def resumable(self) -> bool:
        """Whether this connection has a session that can be resumed: a client's only once the
        server accepted its SETUP (before that there is no session on the other side)."""
        return self._session is not None and not self._closed and self._setup_confirmed

    @property
    def resume_token(self) -> bytes | None:
        return self._session.token if self._session is not None else None

    @property
    def detached(self) -> bool:
        """The transport is gone (or a RESUME awaits its answer): streams wait, nothing is sent."""
        return self._session is not None and self._session.state is not SessionState.ATTACHED

    @property
    def resumes(self) -> int:
        """How many times this connection was resumed."""
        return self._session.resumes if self._session is not None else 0

    @property
    def store_room(self) -> int | None:
        """Bytes the resume store may still take before sending items must wait (None: no store)."""
        return self._session.store.room if self._session is not None else None

    @property
    def store_size(self) -> int:
        """Bytes of sent, unacknowledged frames kept for retransmission."""
        return self._session.store.size if self._session is not None else 0

    def drop_resumption(self) -> bool:
        """Stop being resumable: forget the session and free its store (sending no longer waits
        for the peer's acknowledgements; a broken transport then ends the connection). For a
        peer that never acknowledges what it received. False when there was nothing to drop
        (or the transport is gone: then the session is what the streams wait on)."""
        session = self._session
        if session is None or session.state is not SessionState.ATTACHED or self._closed:
            return False
        self._session = None
        return True

    def detach(self, now: float) -> None:
        """The transport broke: keep the streams, keep what is sent in the store, and wait to be
        resumed within ``resume_session_timeout`` (then the connection closes).

        Raises:
            LocalProtocolError: the connection is not resumable.
        """
        if self._session is None or self._closed:
            raise LocalProtocolError("only an open resumable connection can be detached")
        self._session.detach(now)
        self._priority = []

    def start_resume(self, now: float) -> None:
        """Client: a new transport is open; queue RESUME on it (nothing else goes out until RESUME_OK)."""
        session = self._session
        if self.role is not Role.CLIENT or session is None or self._closed:
            raise LocalProtocolError("only a detached resumable client resumes")
        self.frames_to_send()  # whatever was queued is stored (tracked) or dropped, before RESUME
        session.state = SessionState.RESUMING
        self._keepalive.received(now)
        self._priority = [
            encode_frame(
                ResumeFrame(
                    token=session.token,
                    last_received_server_position=session.received,
                    first_available_client_position=session.store.first,
                )
            )
        ]

    def accept_resume(self, frame: ResumeFrame, now: float) -> str | None:
        """Server: resume this session on the transport that sent ``frame``.

        Queues RESUME_OK and retransmits what the client has not received; returns None.
        Returns the reason instead when the positions cannot be satisfied (then answer the
        new transport with :meth:`refuse_resume`: the session cannot continue, and it is
        closed here).
        """
        session = self._session
        if session is None or self._closed:
            return "no resumable session with this token"
        if not hmac.compare_digest(frame.token, session.token):
            return "the token does not match this session"
        self.frames_to_send()  # stored while detached
        retransmit = session.store.since(frame.last_received_server_position)
        reason = None
        if retransmit is None:
            reason = (
                f"cannot resume from position {frame.last_received_server_position}: this side kept "
                f"{session.store.first}..{session.store.position}"
            )
        elif frame.first_available_client_position > session.received:
            reason = (
                f"cannot resume: the client kept frames from position {frame.first_available_client_position}, "
                f"but this side received only up to {session.received}"
            )
        if reason is not None:
            self._close(ConnectionLostError(f"the session could not be resumed: {reason}"))
            return reason
        assert retransmit is not None
        session.store.release(frame.last_received_server_position)
        session.attached()
        self._keepalive.received(now)
        self._priority = [encode_frame(ResumeOkFrame(last_received_client_position=session.received)), *retransmit]
        self._events.append(Resumed(resumes=session.resumes))
        return None

    def refuse_resume(self, reason: str) -> None:
        """Server, on the new connection whose first frame was RESUME: answer ERROR[REJECTED_RESUME] and close."""
        self._queue(encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.REJECTED_RESUME, message=reason)))
        # not a lost connection: the ERROR must reach the peer before the transport closes
        self._close(RemoteProtocolError(f"refused a RESUME: {reason}", code=ErrorCode.REJECTED_RESUME))

    def _on_resume_ok(self, frame: ResumeOkFrame, now: float) -> None:
        """Client: the server resumed us; retransmit what it has not received."""
        session = self._session
        if session is None or session.state is not SessionState.RESUMING:
            self.ignored_frames += 1
            return
        retransmit = session.store.since(frame.last_received_client_position)
        if retransmit is None:
            reason = (
                f"the server resumed from position {frame.last_received_client_position}, "
                f"but this side kept only {session.store.first}..{session.store.position}"
            )
            self._queue(encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_ERROR, message=reason)))
            session.state = SessionState.ATTACHED  # so that the ERROR goes out
            self._close(ConnectionLostError(f"the session could not be resumed: {reason}"))
            return
        session.store.release(frame.last_received_client_position)
        session.attached()
        self._keepalive.received(now)
        self._priority = retransmit
        self._events.append(Resumed(resumes=session.resumes))
