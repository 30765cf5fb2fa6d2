"""Session resumption (Protocol.md "Resuming Operation"): positions, the store of frames sent
and not yet acknowledged, and the state of one resumable connection.

**Positions.** Each direction counts the bytes of its *tracked* frames (requests,
REQUEST_N, CANCEL, ERROR and PAYLOAD on a stream, as encoded after fragmentation, without
a length prefix): the sender's position is where its next tracked frame starts, the
receiver's *implied* position how far it has processed. KEEPALIVE frames carry the
receiver's position, which lets the sender forget what was received.

**The store** keeps every tracked frame sent and not yet acknowledged, in order; after a
transport breaks, the side that resumes retransmits from the other's last received
position, so nothing is delivered twice and nothing is lost. It is bounded
(``resume_store_bytes``): the runtime stops sending items and requests while it is full
(acknowledgements free it; a receiver acknowledges every quarter of the bound, not only
with its periodic KEEPALIVE). Control frames (REQUEST_N, CANCEL, ERROR) are always
stored, so credit and cancellation are never lost; they are small and few.

**States.** ``ATTACHED``: a transport carries the connection. ``DETACHED``: the transport
is gone; streams stay open, frames produced meanwhile go to the store, and the session
ends if it is not resumed within ``resume_session_timeout``. ``RESUMING`` (client): a
RESUME was sent on a new transport and nothing else may be until RESUME_OK.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections import deque

from ._config import ConnectionConfig
from ._errors import ConnectionLostError, ErrorCode
from ._frames import ErrorFrame, FrameType, KeepaliveFrame, ResumeFrame, ResumeOkFrame, encode_frame
from ._output import Output

__all__ = [
    "CLOSED_BY_PEER",
    "TOKEN_BYTES",
    "ResumeStore",
    "Session",
    "SessionState",
    "is_tracked",
    "make_token",
    "token_matches",
]

#: The ERROR[CONNECTION_ERROR] text a resumable connection closing on purpose sends first.
CLOSED_BY_PEER = "the peer closed the connection"
#: Resume tokens carry at least 128 random bits (and, with a shared secret, 128 bits of MAC).
TOKEN_BYTES = 16

_TRACKED_TYPES = frozenset(
    {
        FrameType.REQUEST_RESPONSE,
        FrameType.REQUEST_FNF,
        FrameType.REQUEST_STREAM,
        FrameType.REQUEST_CHANNEL,
        FrameType.REQUEST_N,
        FrameType.CANCEL,
        FrameType.ERROR,
        FrameType.PAYLOAD,
    }
)


def is_tracked(frame: bytes) -> bool:
    """Whether ``frame`` (encoded, no length prefix) has a position: a stream's request,
    REQUEST_N, CANCEL, ERROR or PAYLOAD (stream id > 0)."""
    return len(frame) >= 6 and frame[4] >> 2 in _TRACKED_TYPES and frame[:4] != b"\x00\x00\x00\x00"


def make_token(secret: str | None = None) -> bytes:
    """A new resume token: 16 random bytes, followed with a shared secret by 16 bytes of
    HMAC-SHA256(secret, those bytes), so a server with the secret can tell that a token was
    minted by a holder of the secret (and by no other identity)."""
    nonce = secrets.token_bytes(TOKEN_BYTES)
    if secret is None:
        return nonce
    return nonce + _mac(secret, nonce)


def token_matches(token: bytes, secret: str | None) -> bool:
    """Whether ``token`` is one :func:`make_token` could have minted with ``secret``."""
    if secret is None:
        return len(token) >= TOKEN_BYTES
    nonce, mac = token[:TOKEN_BYTES], token[TOKEN_BYTES:]
    return len(token) == 2 * TOKEN_BYTES and hmac.compare_digest(mac, _mac(secret, nonce))


def _mac(secret: str, nonce: bytes) -> bytes:
    return hmac.new(secret.encode(), b"rxchannel-resume\n" + nonce, hashlib.sha256).digest()[:TOKEN_BYTES]


class ResumeStore:
    """Tracked frames sent and not yet acknowledged by the peer, with their positions.

    Attributes:
        first: the position of the oldest frame kept (everything before it was acknowledged).
        position: where the next frame sent will start (``first`` + bytes kept).
        size: bytes kept.
    """

    __slots__ = ("_frames", "first", "limit", "position", "size")

    def __init__(self, limit: int):
        self.limit = limit
        self._frames: deque[bytes] = deque()
        self.first = 0
        self.position = 0
        self.size = 0

    def add(self, frame: bytes) -> None:
        self._frames.append(frame)
        self.size += len(frame)
        self.position += len(frame)

    @property
    def room(self) -> int:
        """Bytes that may still be stored before the bound (negative past it)."""
        return self.limit - self.size

    def release(self, upto: int) -> None:
        """Forget the frames that end at or before position ``upto`` (the peer has them)."""
        frames = self._frames
        while frames and self.first + len(frames[0]) <= upto:
            gone = frames.popleft()
            self.first += len(gone)
            self.size -= len(gone)

    def since(self, position: int) -> list[bytes] | None:
        """The frames from ``position`` on, or None when ``position`` is not one we can resume
        from (before what we kept, after what we sent, or inside a frame)."""
        if not self.first <= position <= self.position:
            return None
        at, out = self.first, []
        for frame in self._frames:
            if at >= position:
                out.append(frame)
            elif at + len(frame) > position:
                return None  # inside a frame: not a position the peer can have
            at += len(frame)
        return out


class SessionState(enum.Enum):
    ATTACHED = "attached"
    DETACHED = "detached"
    RESUMING = "resuming"


class Session:
    """The resumption state of one connection (see the module docstring).

    Attributes:
        token: the resume token of the SETUP.
        store: what we sent and the peer has not acknowledged.
        received: our implied position: bytes of tracked frames received from the peer.
        reported: the position we last told the peer (in a KEEPALIVE or RESUME/RESUME_OK).
        detached_at: when the transport was lost (None while attached).
        resumes: how many times the session was resumed.
    """

    __slots__ = ("detached_at", "priority", "received", "reported", "resumes", "state", "store", "timeout", "token")

    def __init__(self, token: bytes, config: ConnectionConfig):
        self.token = token
        #: frames that go out before anything queued and are never stored (RESUME,
        #: RESUME_OK, retransmissions)
        self.priority: list[bytes] = []
        self.store = ResumeStore(config.resume_store_bytes)
        self.timeout = config.resume_session_timeout
        self.state = SessionState.ATTACHED
        self.received = 0
        self.reported = 0
        self.detached_at: float | None = None
        self.resumes = 0

    def matches(self, token: bytes) -> bool:
        return hmac.compare_digest(token, self.token)

    @property
    def ack_every(self) -> int:
        """Received bytes after which a position is reported without waiting for a KEEPALIVE."""
        return max(1, self.store.limit // 4)

    def detach(self, now: float) -> None:
        if self.state is SessionState.ATTACHED:
            self.detached_at = now
        self.state = SessionState.DETACHED
        self.priority = []

    def outgoing(self, frames: list[bytes]) -> list[bytes]:
        """What goes to the transport of ``frames`` drained from the queue: each tracked one is
        also kept in the store; while detached (or a RESUME awaits its answer) they are only
        kept, and nothing but the priority frames goes out."""
        store = self.store
        for frame in frames:
            if is_tracked(frame):
                store.add(frame)
        priority, self.priority = self.priority, []
        if self.state is SessionState.ATTACHED:
            return priority + frames if priority else frames
        return priority  # detached: nothing; resuming: the RESUME frame only

    def count(self, frame: bytes, out: Output) -> bool:
        """Bookkeeping for one received frame; False to drop it.

        A tracked frame moves our implied position (and every quarter of the store's bound
        we queue a report of it on ``out``, so the peer can free its store). While a RESUME
        awaits its answer only frames on stream 0 are taken.
        """
        if self.state is SessionState.RESUMING and frame[:4] != b"\x00\x00\x00\x00":
            return False
        if is_tracked(frame):
            self.received += len(frame)
            if self.received - self.reported >= self.ack_every:
                self.reported = self.received
                out.queue(encode_frame(KeepaliveFrame(respond=False, position=self.received)))
        return True

    def resume(self) -> None:
        """Client, on a new transport: RESUME goes out first, and nothing else until RESUME_OK."""
        self.state = SessionState.RESUMING
        resume = ResumeFrame(
            token=self.token,
            last_received_server_position=self.received,
            first_available_client_position=self.store.first,
        )
        self.priority = [encode_frame(resume)]

    @property
    def kept(self) -> str:
        """The positions the store can resume from, for a message."""
        return f"{self.store.first}..{self.store.position}"

    def accept(self, frame: ResumeFrame) -> str | None:
        """Server: resume from the client's RESUME (queues RESUME_OK, then what the client has
        not received), or the reason its positions cannot be satisfied."""
        position = frame.last_received_server_position
        if self.store.since(position) is None:
            return f"cannot resume from position {position}: this side kept {self.kept}"
        if frame.first_available_client_position > self.received:
            return (
                f"cannot resume: the client kept frames from position {frame.first_available_client_position}, "
                f"but this side received only up to {self.received}"
            )
        self._resumed(position, encode_frame(ResumeOkFrame(last_received_client_position=self.received)))
        return None

    def resumed_by(self, frame: ResumeOkFrame, out: Output) -> str | None:
        """Client: the server's RESUME_OK; retransmit what it has not received, or say why we cannot
        (queues ERROR[CONNECTION_ERROR]: the session cannot go on)."""
        position = frame.last_received_client_position
        if self.store.since(position) is None:
            reason = f"the server resumed from position {position}, but this side kept only {self.kept}"
            self.state = SessionState.ATTACHED  # so that the ERROR saying it goes out
            out.queue(encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_ERROR, message=reason)))
            return reason
        self._resumed(position)
        return None

    def expiry(self, now: float) -> ConnectionLostError | None:
        """The error that ends a session not resumed in time, once it is past ``resume_session_timeout``."""
        expires = self.expires_at()
        if expires is None or now < expires:
            return None
        return ConnectionLostError(
            f"the connection broke and was not resumed within {self.timeout:g} s (resume_session_timeout)"
        )

    def _resumed(self, position: int, *first: bytes) -> None:
        """The session goes on from the peer's ``position``: ``first`` goes out, then what the
        peer has not received (``position`` must not be :meth:`unresumable`)."""
        retransmit = self.store.since(position)
        assert retransmit is not None
        self.store.release(position)
        self.attached()
        self.priority = [*first, *retransmit]

    def expires_at(self) -> float | None:
        return None if self.detached_at is None else self.detached_at + self.timeout

    def attached(self) -> None:
        self.state = SessionState.ATTACHED
        self.detached_at = None
        self.resumes += 1
        self.reported = self.received
