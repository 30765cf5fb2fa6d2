"""What rxchannel needs of a WebRTC stack, and the stacks it has.

Everything above this module (the DataChannel transport, the offerer, the answerer, the
signaling routes) talks to a :class:`PeerConnection` and its :class:`Channel`, never to a
stack's own classes, so a hub and a worker may each run on either stack:

* ``aiortc``: pure Python, always installed (:mod:`.aiortc_stack`);
* ``native``: libwebrtc compiled (the ``reactor-webrtc`` package, the optional extra
  ``[native]``; :mod:`.native_stack`).

A :class:`Channel` has the surface of aiortc's ``RTCDataChannel`` (the W3C names:
``readyState``, ``bufferedAmount``, ``bufferedAmountLowThreshold``, ``send``, ``close``,
and the events ``open``, ``message``, ``close``, ``bufferedamountlow`` through
``on``/``once``/``remove_listener``), and every event is delivered on the event loop in
the order the stack saw it. The rule both stacks keep (issue 23): :meth:`PeerConnection.on_channel`
hands over a remote channel *before* any message of it is delivered, so whoever listens
in that callback sees everything.

Signaling is not trickled: :meth:`PeerConnection.offer` and :meth:`PeerConnection.answer`
return the description with every candidate gathered (host candidates only on ``hosts``
when given, inside ``udp_ports`` when given).
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .ice import IceServer

__all__ = [
    "PATHS",
    "STACKS",
    "Channel",
    "Gathered",
    "PeerConnection",
    "PeerStack",
    "Stack",
    "W3cPeer",
    "available_stacks",
    "either_path",
    "choose_stack",
    "default_stack",
    "get_stack",
    "path_of",
]


class Channel(Protocol):
    """A DataChannel, as the transport uses it (aiortc's ``RTCDataChannel`` surface)."""

    @property
    def readyState(self) -> str: ...  # noqa: N802 - the W3C name
    @property
    def bufferedAmount(self) -> int: ...  # noqa: N802

    bufferedAmountLowThreshold: int  # noqa: N815

    @property
    def ordered(self) -> bool: ...
    @property
    def maxRetransmits(self) -> int | None: ...  # noqa: N802
    @property
    def maxPacketLifeTime(self) -> int | None: ...  # noqa: N802
    def send(self, data: bytes | str) -> None: ...
    def close(self) -> None: ...
    def on(self, event: str, f: Callable[..., Any]) -> Any: ...
    def once(self, event: str, f: Callable[..., Any]) -> Any: ...
    def remove_listener(self, event: str, f: Callable[..., Any]) -> None: ...


@dataclass
class Gathered:
    """What gathering a description found wrong (a TURN server's refusal, a full port range)."""

    failures: list[str] = field(default_factory=list)


class PeerConnection(abc.ABC):
    """One peer connection on some stack: descriptions, one DataChannel, its state."""

    #: the stack's name (``aiortc``, ``native``)
    stack: str

    @property
    @abc.abstractmethod
    def connection_state(self) -> str:
        """W3C ``connectionState``: new, connecting, connected, disconnected, failed, closed."""

    @property
    @abc.abstractmethod
    def ice_state(self) -> str:
        """W3C ``iceConnectionState``: new, checking, connected, completed, failed, disconnected, closed."""

    @property
    @abc.abstractmethod
    def local_sdp(self) -> str | None:
        """The local description's SDP (with its candidates), once set."""

    @property
    @abc.abstractmethod
    def remote_sdp(self) -> str | None:
        """The remote description's SDP, once set."""

    @abc.abstractmethod
    def create_channel(self, label: str) -> Channel:
        """An ordered, reliable DataChannel negotiated in band (the offerer's side)."""

    @abc.abstractmethod
    def on_channel(self, callback: Callable[[Channel], None]) -> None:
        """Call ``callback(channel)`` for a channel the remote opens, before any of its messages."""

    @abc.abstractmethod
    def on_state(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the loop whenever :attr:`connection_state` changes."""

    @abc.abstractmethod
    def remove_state_listener(self, callback: Callable[[], None]) -> None: ...

    @abc.abstractmethod
    async def offer(self, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None) -> Gathered:
        """Create the offer and set it as the local description, every candidate gathered."""

    @abc.abstractmethod
    async def answer(self, offer_sdp: str, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None) -> Gathered:
        """Set the remote offer, create the answer and set it locally, every candidate gathered.

        Raises:
            ValueError: the offer's SDP is not usable (the message says why).
        """

    @abc.abstractmethod
    async def accept(self, answer_sdp: str) -> None:
        """Set the remote answer (the offerer's side).

        Raises:
            ValueError: the answer's SDP is not usable.
        """

    @abc.abstractmethod
    def transport_closed(self) -> bool:
        """True when the association under the channels is gone (a channel closing then is a
        break, not an orderly close)."""

    @abc.abstractmethod
    def candidate_types(self) -> tuple[str, str] | None:
        """The types of the selected candidate pair, (local, remote) (``host``, ``srflx``,
        ``prflx``, ``relay``), or None before a pair is selected."""

    async def selected_path(self) -> str:
        """The path the connection took (:func:`path_of`), once its channel is open; a stack
        whose statistics are asynchronous reads them here."""
        return path_of(self)

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the peer connection and everything it holds. Idempotent."""


class W3cPeer(PeerConnection):
    """A :class:`PeerConnection` over ``pc``, an object with the W3C ``RTCPeerConnection``'s
    events and ``close`` (aiortc's, or the native stack's stand-in for it)."""

    pc: Any

    def on_channel(self, callback: Callable[[Channel], None]) -> None:
        self.pc.on("datachannel", callback)

    def on_state(self, callback: Callable[[], None]) -> None:
        self.pc.on("connectionstatechange", callback)

    def remove_state_listener(self, callback: Callable[[], None]) -> None:
        self.pc.remove_listener("connectionstatechange", callback)

    async def close(self) -> None:
        await self.pc.close()


def path_of(pc: PeerConnection) -> str:
    """The path a connection took, as the CLI reports it: ``webrtc-relay`` when either side
    of the selected pair is a TURN relay, ``webrtc-srflx`` when either is server-reflexive
    (an address a STUN server saw: through a NAT), else ``webrtc-host`` (a peer-reflexive
    candidate, learned from a check, is a direct path too: it counts as host)."""
    types = pc.candidate_types()
    if types is None:
        return "webrtc"
    if "relay" in types:
        return "webrtc-relay"
    if "srflx" in types:
        return "webrtc-srflx"
    return "webrtc-host"


#: The paths from the most direct to the least: two views of one connection agree on the later.
PATHS = ("direct", "webrtc", "webrtc-host", "webrtc-srflx", "webrtc-relay")


def either_path(ours: str, theirs: object) -> str:
    """One connection's path from both ends' views: a relay on either side makes it relayed
    (libwebrtc tells each end only its own candidate's type). A view that is not a path
    name (an older hub, a confused one) changes nothing."""
    if theirs not in PATHS or ours not in PATHS:
        return ours
    return max(ours, str(theirs), key=PATHS.index)


class Stack(Protocol):
    """A WebRTC stack: makes peer connections."""

    name: str

    def new_peer_connection(self, ice_servers: Sequence[IceServer]) -> PeerConnection: ...


class PeerStack:
    """A :class:`Stack` whose peer connections are made by ``connection_class(ice_servers)``."""

    name: str
    connection_class: Callable[[Sequence[IceServer]], PeerConnection]

    def new_peer_connection(self, ice_servers: Sequence[IceServer]) -> PeerConnection:
        return self.connection_class(ice_servers)


#: Stack name -> (module, what it is, the package that provides it).
STACKS: dict[str, tuple[str, str, str]] = {
    "aiortc": ("rxchannel.webrtc.aiortc_stack", "aiortc (pure Python)", "aiortc"),
    "native": ("rxchannel.webrtc.native_stack", "libwebrtc (compiled, reactor-webrtc)", "reactor_webrtc"),
}


def available_stacks() -> list[str]:
    """The stacks installed here, in order of preference (the compiled one first)."""
    return [name for name in ("native", "aiortc") if importlib.util.find_spec(STACKS[name][2]) is not None]


def default_stack() -> str:
    """``native`` when it is installed, else ``aiortc``."""
    return available_stacks()[0]


def choose_stack(name: str | None, hosts: Sequence[str] | None) -> Stack:
    """The stack for a peer connection gathering on ``hosts``: ``name`` when given, else the
    native one when it is installed and ``hosts`` are not all loopback addresses (libwebrtc
    never gathers on loopback: a hub bound to 127.0.0.1, or a worker dialing one, runs on
    aiortc), else aiortc.

    Raises:
        ValueError: as :func:`get_stack`.
    """
    if name is None and hosts is not None and all(_loopback(h) for h in hosts):
        return get_stack("aiortc")
    return get_stack(name)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def get_stack(name: str | None = None) -> Stack:
    """The stack called ``name`` (None: :func:`default_stack`).

    Raises:
        ValueError: an unknown stack, or one that is not installed (the message says how to install it).
    """
    name = name or default_stack()
    if name not in STACKS:
        raise ValueError(f"unknown WebRTC stack {name!r}: use one of {', '.join(STACKS)}")
    module, what, package = STACKS[name]
    if importlib.util.find_spec(package) is None:
        raise ValueError(
            f"the {name} WebRTC stack ({what}) is not installed: pip install 'rxchannel[native]', "
            "or use --webrtc-stack aiortc"
        )
    stack: Stack = importlib.import_module(module).STACK
    return stack
