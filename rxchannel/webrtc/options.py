"""How a hub serves and a worker dials over WebRTC: one object, passed whole.

:class:`~rxchannel.transports.TransportOptions` carries it as ``webrtc=``; every WebRTC
function takes it (or builds the default) instead of a row of keywords.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .ice import IceServer, SignalingLimits, TurnRest

__all__ = ["VIAS", "WebRtcOptions", "webrtc_options"]

#: How a worker reaches a hub's ``http://`` URL: the hub's direct WebSocket when it opens,
#: else WebRTC (``auto``); only the direct path; only WebRTC.
VIAS = ("auto", "direct", "webrtc")


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcOptions:
    """WebRTC settings of a hub or a worker (each uses what applies to it).

    Attributes:
        ice_servers: STUN/TURN servers (:class:`~.ice.IceServer`, or bare STUN URLs); none by
            default, so no STUN server is contacted unless asked.
        turn: hub: a TURN server with coturn ``use-auth-secret`` credentials; the hub relays
            through it itself and hands time-limited credentials to workers
            (``GET /ice-servers``, signed when the hub has a secret).
        udp_ports: ``(lo, hi)``, the UDP ports host candidates bind (a firewall's range).
        ice_timeout: dialing: seconds from the hub's answer until some candidate pair must
            work; past it the dial fails, naming the candidates tried.
        signaling: hub: what one offer may cost (rate, size, pending connections, which peer
            addresses may be checked).
        stack: the WebRTC stack (``aiortc``, ``native``; None: native when installed).
        via: worker: how to reach an ``http://`` hub (:data:`VIAS`).
        direct: hub: also serve RSocket over a WebSocket at ``/rsocket`` on the HTTP port
            (workers that can reach the port take it: ``--via auto``).
        direct_timeout: worker with ``via="auto"``: seconds the direct WebSocket may take to
            open before WebRTC is tried instead.
    """

    ice_servers: Sequence[IceServer | str] = ()
    turn: TurnRest | None = None
    udp_ports: tuple[int, int] | None = None
    ice_timeout: float = 4.0
    signaling: SignalingLimits = field(default_factory=SignalingLimits)
    stack: str | None = None
    via: str = "auto"
    direct: bool = True
    direct_timeout: float = 3.0

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise ValueError(f"via must be one of {', '.join(VIAS)}, not {self.via!r}")
        if self.ice_timeout <= 0 or self.direct_timeout <= 0:
            raise ValueError("ice_timeout and direct_timeout must be positive")

    def servers(self) -> list[IceServer]:
        """:attr:`ice_servers` as :class:`~.ice.IceServer` objects."""
        return [s if isinstance(s, IceServer) else IceServer.parse(s) for s in self.ice_servers]


def webrtc_options(value: object) -> WebRtcOptions:
    """``TransportOptions.webrtc`` as a :class:`WebRtcOptions` (None: the defaults).

    Raises:
        TypeError: something else was given.
    """
    if value is None:
        return WebRtcOptions()
    if not isinstance(value, WebRtcOptions):
        raise TypeError(f"TransportOptions.webrtc must be a WebRtcOptions, not {type(value).__name__}")
    return value
