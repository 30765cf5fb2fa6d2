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

from ._frames import FrameType

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

    __slots__ = ("detached_at", "received", "reported", "resumes", "state", "store", "timeout", "token")

    def __init__(self, token: bytes, store_bytes: int, timeout: float):
        self.token = token
        self.store = ResumeStore(store_bytes)
        self.timeout = timeout
        self.state = SessionState.ATTACHED
        self.received = 0
        self.reported = 0
        self.detached_at: float | None = None
        self.resumes = 0

    @property
    def ack_every(self) -> int:
        """Received bytes after which a position is reported without waiting for a KEEPALIVE."""
        return max(1, self.store.limit // 4)

    def detach(self, now: float) -> None:
        if self.state is SessionState.ATTACHED:
            self.detached_at = now
        self.state = SessionState.DETACHED

    def expires_at(self) -> float | None:
        return None if self.detached_at is None else self.detached_at + self.timeout

    def attached(self) -> None:
        self.state = SessionState.ATTACHED
        self.detached_at = None
        self.resumes += 1
        self.reported = self.received
