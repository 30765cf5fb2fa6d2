"""What a hub checks before an offer may cost it a peer connection (issue 11, cases 7, 8, 13, 17).

Standard library only. In the order the hub applies them:

1. :class:`AddressRateLimiter`: offers per second per client address (a token bucket).
2. The body size (``max_offer_bytes``), before the body is read in full.
3. :class:`RequestAuth`: when the hub has a secret, the request must carry
   ``Authorization: RXCHANNEL-HMAC-SHA256 ts=<unix seconds>,nonce=<random>,mac=<hex>``
   with ``mac = hex(HMAC-SHA256(secret, "<ts>\\n<nonce>\\n<METHOD>\\n<path>\\n" +
   hex(SHA-256(body))))`` (``nonce``: 8 to 64 characters of ``[A-Za-z0-9_-]``).
   The secret itself never crosses plain HTTP (over WebRTC it is only ever sent inside
   DTLS, in SETUP); a request more than ``window`` seconds away from the hub's clock, or
   a MAC seen before (a replay), is refused.
4. :func:`check_offer`: the SDP itself: at least one ``m=application`` DataChannel
   section, at most ``max_candidates`` candidates, every candidate line well formed, a
   usable ``a=max-message-size``; candidates whose address the
   :class:`~rxchannel.webrtc.ice.PeerAddressPolicy` refuses are removed, so the hub
   never sends a connectivity check there.

Every refusal is an :class:`OfferRefusedError` carrying the HTTP status and a message that
names the limit and the flag that raises it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from rxchannel.transports.http import RequestRefusedError

from .ice import PeerAddressPolicy, SignalingLimits

__all__ = [
    "AUTH_SCHEME",
    "MIN_MESSAGE_SIZE",
    "AddressRateLimiter",
    "OfferRefusedError",
    "RequestAuth",
    "check_offer",
    "sign_request",
]

AUTH_SCHEME = "RXCHANNEL-HMAC-SHA256"
#: The smallest ``a=max-message-size`` accepted: below it every frame would be cut into
#: dozens of fragments (and the core needs at least 64 bytes a frame).
MIN_MESSAGE_SIZE = 1024


class OfferRefusedError(RequestRefusedError):
    """A signaling request refused; :attr:`status` is the HTTP status to answer with."""


def _string_to_sign(ts: int, nonce: str, method: str, path: str, body: bytes) -> bytes:
    return f"{ts}\n{nonce}\n{method.upper()}\n{path}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign_request(secret: str, method: str, path: str, body: bytes, now: float) -> str:
    """The ``Authorization`` header value for a signaling request (see the module docstring)."""
    ts, nonce = int(now), secrets.token_urlsafe(12)
    mac = hmac.new(secret.encode(), _string_to_sign(ts, nonce, method, path, body), hashlib.sha256).hexdigest()
    return f"{AUTH_SCHEME} ts={ts},nonce={nonce},mac={mac}"


_AUTH = re.compile(rf"^{AUTH_SCHEME} ts=(\d{{1,12}}),nonce=([A-Za-z0-9_-]{{8,64}}),mac=([0-9a-f]{{64}})$")


class RequestAuth:
    """Checks signed signaling requests against the hub's secret, refusing replays.

    Args:
        secret: the hub's shared secret (``--secret`` / ``RXCHANNEL_SECRET``).
        window: seconds a signature stays valid either side of the hub's clock.
    """

    def __init__(self, secret: str, *, window: float = 300.0, max_remembered: int = 100_000):
        self._key = secret.encode()
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()  # mac -> when it stops being valid
        self._max_remembered = max_remembered

    def check(self, header: str | None, method: str, path: str, body: bytes, now: float) -> None:
        """Accept the request or raise.

        Raises:
            OfferRefusedError: 401, saying what was wrong (missing, malformed, stale, wrong or replayed).
        """
        if not header:
            raise OfferRefusedError(
                401, "this hub requires the shared secret: dial it with --secret (or RXCHANNEL_SECRET)"
            )
        match = _AUTH.match(header.strip())
        if match is None:
            raise OfferRefusedError(
                401, f"malformed Authorization header: expected '{AUTH_SCHEME} ts=...,nonce=...,mac=...'"
            )
        ts, nonce, mac = int(match[1]), match[2], match[3]
        if abs(now - ts) > self.window:
            raise OfferRefusedError(
                401,
                f"the request's clock differs from the hub's by {abs(now - ts):.0f} s (more than {self.window:.0f})",
            )
        expected = hmac.new(self._key, _string_to_sign(ts, nonce, method, path, body), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            raise OfferRefusedError(401, "authentication failed: wrong shared secret (--secret)")
        while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) >= self._max_remembered):
            self._seen.popitem(last=False)
        if mac in self._seen:
            raise OfferRefusedError(401, "this signed request was already used (a replay)")
        self._seen[mac] = ts + self.window


class AddressRateLimiter:
    """A token bucket per client address: ``rate`` per second sustained, ``burst`` at once.

    Remembers at most ``max_addresses`` addresses (the least recently seen are forgotten,
    which only ever gives an address a fresh bucket).
    """

    def __init__(self, rate: float, burst: int, *, max_addresses: int = 10_000):
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)
        self._max = max_addresses

    def take(self, address: str, now: float) -> float | None:
        """Take one token for ``address``: None if granted, else seconds until one is available."""
        tokens, at = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[address] = (tokens - 1, now)
            granted = True
        else:
            self._buckets[address] = (tokens, now)
            granted = False
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return None if granted else (1 - tokens) / self.rate


_HOSTNAME = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
_MAX_MESSAGE = re.compile(r"^a=max-message-size:(\d{1,12})$")


@dataclass(frozen=True, slots=True)
class CheckedOffer:
    """An offer that passed :func:`check_offer`: its SDP (denied candidates removed) and counts."""

    sdp: str
    candidates: int
    dropped: int


def _candidate_address(line: str, number: int) -> str:
    """The connection address of an ``a=candidate:`` line (RFC 8839 section 5.1), or raise 400."""
    fields = line[len("a=candidate:") :].split()

    def bad(why: str) -> OfferRefusedError:
        return OfferRefusedError(400, f"SDP line {number}: malformed ICE candidate ({why})")

    if len(fields) < 8 or fields[6] != "typ":
        raise bad("expected 'foundation component transport priority address port typ type'")
    foundation, component, transport, priority, address, port, _, kind = fields[:8]
    if not re.fullmatch(r"[A-Za-z0-9+/]{1,32}", foundation):
        raise bad("foundation")
    if not component.isdigit() or not 1 <= int(component) <= 256:
        raise bad("component")
    if transport.lower() not in ("udp", "tcp"):
        raise bad(f"transport {transport[:16]!r}")
    if not priority.isdigit() or int(priority) >= 1 << 32:
        raise bad("priority")
    if not _HOSTNAME.match(address) and not re.fullmatch(r"[0-9A-Fa-f:.%]{2,64}", address):
        raise bad("address")
    if not port.isdigit() or int(port) > 65535:
        raise bad("port")
    if kind not in ("host", "srflx", "prflx", "relay"):
        raise bad(f"type {kind[:16]!r}")
    return address


def check_offer(sdp: str, limits: SignalingLimits, peers: PeerAddressPolicy | None = None) -> CheckedOffer:
    """Check an offer's SDP and drop the candidates ``peers`` (default ``limits.peers``) refuses.

    Raises:
        OfferRefusedError: 413 (too large, too many candidates) or 400 (malformed, no
            DataChannel section, no ICE credentials or DTLS fingerprint, a max-message-size
            below :data:`MIN_MESSAGE_SIZE`).
    """
    peers = peers or limits.peers
    if len(sdp) > limits.max_offer_bytes:
        raise OfferRefusedError(
            413,
            f"the offer is {len(sdp)} bytes; the limit is {limits.max_offer_bytes} (raise it with --max-offer-bytes)",
        )
    lines = sdp.splitlines()
    if not lines or lines[0].strip() != "v=0":
        raise OfferRefusedError(400, "the offer is not SDP (it must start with v=0)")
    media = [line for line in lines if line.startswith("m=")]
    if not any(line.startswith("m=application") and "webrtc-datachannel" in line for line in media):
        raise OfferRefusedError(
            400, "the offer has no DataChannel section (m=application ... UDP/DTLS/SCTP webrtc-datachannel)"
        )
    for attribute, what in (
        ("a=ice-ufrag:", "ICE username"),
        ("a=ice-pwd:", "ICE password"),
        ("a=fingerprint:", "DTLS fingerprint"),
    ):
        if not any(line.startswith(attribute) for line in lines):
            raise OfferRefusedError(400, f"the offer has no {attribute[:-1]} ({what})")
    count = sum(1 for line in lines if line.startswith("a=candidate:"))
    if count > limits.max_candidates:
        raise OfferRefusedError(
            413, f"the offer has {count} ICE candidates; the limit is {limits.max_candidates} (--max-candidates)"
        )
    kept: list[str] = []
    dropped = 0
    for number, line in enumerate(lines, 1):
        if line.startswith("a=candidate:"):
            if not peers.permits(_candidate_address(line, number)):
                dropped += 1
                continue
        elif line.startswith("a=max-message-size:"):
            match = _MAX_MESSAGE.match(line.strip())
            if match is None:
                raise OfferRefusedError(400, f"SDP line {number}: malformed a=max-message-size")
            size = int(match[1])
            if 0 < size < MIN_MESSAGE_SIZE:
                raise OfferRefusedError(
                    400, f"a=max-message-size:{size} is below {MIN_MESSAGE_SIZE}, the smallest rxchannel accepts"
                )
        kept.append(line)
    return CheckedOffer("\r\n".join(kept) + "\r\n", count, dropped)
