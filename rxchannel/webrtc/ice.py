"""ICE configuration, W3C-shaped: ICE servers, ephemeral TURN credentials, peer-address policy.

Standard library only (no aiortc import), so options can be built and validated without
loading WebRTC.

* :class:`IceServer` is one ``RTCIceServer`` dictionary (``urls``, ``username``,
  ``credential``), validated when built: a bad URL is refused with a message that says
  what to write instead, never passed on to aiortc to fail later.
* :class:`TurnRest` mints time-limited TURN credentials the way coturn's
  ``use-auth-secret`` expects (the "TURN REST API" scheme): the username is
  ``<expiry unix time>:<id>`` and the credential is ``base64(HMAC-SHA1(secret, username))``.
  coturn recomputes the HMAC with its ``static-auth-secret`` and refuses an expired one,
  so a credential handed to a worker stops working after ``ttl`` seconds by itself.
* :class:`PeerAddressPolicy` says which remote candidate addresses a peer connection may
  send connectivity checks to (coturn's ``denied-peer-ip`` / ``allowed-peer-ip``).
* :class:`SignalingLimits` bounds what one offer may cost the hub.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rxchannel.core import RxChannelError

__all__ = [
    "DEFAULT_DENIED_PEERS",
    "IceServer",
    "IceServerError",
    "PeerAddressPolicy",
    "SignalingLimits",
    "TurnRest",
    "ice_servers_from_json",
    "parse_port_range",
]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class IceServerError(RxChannelError, ValueError):
    """An ICE server description that cannot be used; the message says how to fix it."""


_URL = re.compile(
    r"^(?P<scheme>stun|stuns|turn|turns):"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)


def _check_url(url: str) -> str:
    if not isinstance(url, str):
        raise IceServerError(f"an ICE server URL must be a string, got {type(url).__name__}")
    if "@" in url:
        raise IceServerError(
            f"{url!r}: put TURN credentials in --ice-username/--ice-credential (or the 'username' and "
            "'credential' keys of RXCHANNEL_ICE_SERVERS), not in the URL; e.g. --ice-server turn:HOST:3478"
        )
    match = _URL.match(url)
    if match is None:
        raise IceServerError(
            f"{url!r} is not an ICE server URL: use stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp] "
            "or turns:HOST[:PORT]"
        )
    scheme, transport, port = match["scheme"], match["transport"], match["port"]
    if scheme == "stuns":
        raise IceServerError(f"{url!r}: stuns: is not supported by aiortc; use stun: or turns:")
    if scheme.startswith("stun") and transport:
        raise IceServerError(f"{url!r}: a stun: URL takes no ?transport=")
    if scheme == "turns" and transport == "udp":
        raise IceServerError(f"{url!r}: turns: runs over TCP only (drop ?transport=udp)")
    if port is not None and not 0 < int(port) < 65536:
        raise IceServerError(f"{url!r}: port {port} is out of range")
    return url


@dataclass(frozen=True, slots=True)
class IceServer:
    """One W3C ``RTCIceServer``: its URLs and, for TURN, a username and credential.

    Raises:
        IceServerError: a malformed URL, credentials inside the URL, or a TURN URL
            without both username and credential.
    """

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.urls:
            raise IceServerError("an ICE server needs at least one URL")
        for url in self.urls:
            _check_url(url)
        if self.is_turn and (not self.username or not self.credential):
            raise IceServerError(
                f"{self.urls[0]!r} is a TURN server: it needs a username and a credential "
                "(--ice-username/--ice-credential, or let the hub mint them: serve --turn-url URL --turn-secret S)"
            )
        if (self.username is None) != (self.credential is None):
            raise IceServerError(f"{self.urls[0]!r}: give both a username and a credential, or neither")

    @classmethod
    def parse(cls, url: str, username: str | None = None, credential: str | None = None) -> IceServer:
        """An ICE server from a command-line URL; the credentials apply to TURN URLs only."""
        turn = url.startswith("turn")
        return cls((url,), username if turn else None, credential if turn else None)

    @classmethod
    def from_w3c(cls, entry: object) -> IceServer:
        """From an ``RTCIceServer`` dictionary (``urls`` a string or a list of strings).

        Raises:
            IceServerError: not such a dictionary, or an unusable one.
        """
        if not isinstance(entry, Mapping):
            raise IceServerError(f"an ICE server must be an object with 'urls', got {type(entry).__name__}")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise IceServerError("an ICE server's 'urls' must be a string or a list of strings")
        username, credential = entry.get("username"), entry.get("credential")
        for key, value in (("username", username), ("credential", credential)):
            if value is not None and not isinstance(value, str):
                raise IceServerError(f"an ICE server's {key!r} must be a string")
        if entry.get("credentialType", "password") != "password":
            raise IceServerError("only credentialType 'password' is supported")
        return cls(tuple(urls), username, credential)

    @property
    def is_turn(self) -> bool:
        """True if any URL is a TURN server (which needs credentials)."""
        return any(url.startswith("turn") for url in self.urls)

    def to_w3c(self) -> dict[str, Any]:
        """The ``RTCIceServer`` dictionary a browser's ``RTCPeerConnection`` accepts."""
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry

    def describe(self) -> str:
        """The URLs, without the credential (for messages)."""
        return ", ".join(self.urls)


def ice_servers_from_json(text: str, *, source: str = "RXCHANNEL_ICE_SERVERS") -> list[IceServer]:
    """Parse a JSON list of ``RTCIceServer`` dictionaries (the ``RXCHANNEL_ICE_SERVERS`` format).

    Raises:
        IceServerError: not JSON, not a list, or an unusable entry (the message names ``source``).
    """
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError):
        raise IceServerError(f'{source} is not JSON: expected a list like [{{"urls": "stun:HOST:3478"}}]') from None
    if isinstance(entries, Mapping):
        entries = [entries]
    if not isinstance(entries, list):
        raise IceServerError(f"{source} must be a JSON list of RTCIceServer objects")
    servers = []
    for i, entry in enumerate(entries):
        try:
            servers.append(IceServer.from_w3c(entry))
        except IceServerError as exc:
            raise IceServerError(f"{source}[{i}]: {exc}") from None
    return servers


@dataclass(frozen=True, slots=True)
class TurnRest:
    """A TURN server whose credentials are minted from a shared secret (coturn ``use-auth-secret``).

    The hub uses it for its own relay candidates and hands credentials for it to workers
    and to the worker page; each credential expires ``ttl`` seconds after it was minted
    (coturn then refuses it, also for allocation refreshes: keep ``ttl`` above the
    longest transfer).

    Raises:
        IceServerError: no URL, a non-TURN URL, an empty secret or a non-positive ttl.
    """

    urls: tuple[str, ...]
    secret: str = field(repr=False)
    ttl: int = 86400

    def __post_init__(self) -> None:
        if not self.urls:
            raise IceServerError("--turn-url needs a URL, e.g. turn:turn.example.org:3478")
        for url in self.urls:
            _check_url(url)
            if not url.startswith("turn"):
                raise IceServerError(f"--turn-url {url!r}: expected a turn: or turns: URL")
        if not self.secret:
            raise IceServerError("--turn-url needs --turn-secret (coturn's static-auth-secret)")
        if self.ttl <= 0:
            raise IceServerError("the TURN credential lifetime must be positive")

    def credentials(self, now: float, user: str | None = None) -> tuple[str, str]:
        """``(username, credential)`` valid until ``now + ttl`` (unix seconds)."""
        username = f"{int(now) + self.ttl}:{user or secrets.token_hex(4)}"
        mac = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(mac).decode()

    def mint(self, now: float, user: str | None = None) -> IceServer:
        """An :class:`IceServer` with fresh credentials for these URLs."""
        username, credential = self.credentials(now, user)
        return IceServer(self.urls, username, credential)


def _networks(values: Iterable[str | IpNetwork]) -> tuple[IpNetwork, ...]:
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value, strict=False) if isinstance(value, str) else value)
        except ValueError:
            raise ValueError(f"{value!r} is not an address or network (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)") from None
    return tuple(nets)


#: Never a sensible ICE peer: "this network", loopback, link-local, multicast, reserved, broadcast.
DEFAULT_DENIED_PEERS: tuple[IpNetwork, ...] = _networks(
    [
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
    ]
)


@dataclass(frozen=True, slots=True)
class PeerAddressPolicy:
    """Which remote ICE candidate addresses a peer connection may send connectivity checks to.

    An address is refused if it is in ``denied`` and not in ``allowed`` (an allowed range
    punches a hole in a denied one, as coturn's ``allowed-peer-ip`` does). Candidates the
    policy refuses are removed from the remote description before aiortc sees them, so
    no STUN packet is ever sent there. Host names (mDNS ``.local`` candidates) are kept:
    they resolve only on the local link.
    """

    denied: tuple[IpNetwork, ...] = DEFAULT_DENIED_PEERS
    allowed: tuple[IpNetwork, ...] = ()

    @classmethod
    def build(
        cls, denied: Sequence[str] = (), allowed: Sequence[str] = (), *, defaults: bool = True
    ) -> PeerAddressPolicy:
        """The default denied ranges (if ``defaults``) plus ``denied``, with ``allowed`` exempted.

        Raises:
            ValueError: a value that is not an address or network.
        """
        base = DEFAULT_DENIED_PEERS if defaults else ()
        return cls(base + _networks(denied), _networks(allowed))

    def with_allowed(self, *addresses: str) -> PeerAddressPolicy:
        """This policy, also allowing ``addresses`` (the hub's own loopback when it serves on it)."""
        return PeerAddressPolicy(self.denied, self.allowed + _networks(addresses))

    def permits(self, address: str) -> bool:
        """False if ``address`` (an IP literal) is denied; names are permitted."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return True
        if any(ip in net for net in self.allowed if net.version == ip.version):
            return True
        return not any(ip in net for net in self.denied if net.version == ip.version)


@dataclass(frozen=True, slots=True)
class SignalingLimits:
    """What one WebRTC offer may cost a hub (issue 11, cases 7 and 8); every refusal names its flag.

    Attributes:
        max_offer_bytes: largest offer body accepted (``--max-offer-bytes``).
        max_candidates: most ``a=candidate`` lines in one offer (``--max-candidates``).
        max_pending: peer connections answered whose channel has not opened yet, in all
            (``--max-pending-offers``); each holds UDP sockets until it opens or times out. When
            they are all taken, a new offer takes the place of the oldest of the address with
            the most (:mod:`rxchannel.transports.admission`).
        max_pending_per_address: the same, per client address.
        offer_rate: offers per second accepted from one address, sustained (``--offer-rate``);
            ``offer_burst`` may arrive at once.
        peers: which remote candidate addresses may be checked (``--denied-peer-ip``).
    """

    max_offer_bytes: int = 64 * 1024
    max_candidates: int = 64
    max_pending: int = 64
    max_pending_per_address: int = 8
    offer_rate: float = 2.0
    offer_burst: int = 10
    peers: PeerAddressPolicy = PeerAddressPolicy()

    def __post_init__(self) -> None:
        for name in ("max_offer_bytes", "max_candidates", "max_pending", "max_pending_per_address", "offer_burst"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.offer_rate <= 0:
            raise ValueError("offer_rate must be positive")


def parse_port_range(text: str) -> tuple[int, int]:
    """``"LO-HI"`` as a pair of UDP ports.

    Raises:
        ValueError: not two ports 1..65535 with LO <= HI.
    """
    match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a port range: use LO-HI, e.g. 50000-50100")
    lo, hi = int(match[1]), int(match[2])
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"{text!r}: ports must satisfy 1 <= LO <= HI <= 65535")
    return lo, hi
