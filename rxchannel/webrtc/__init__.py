"""WebRTC: DataChannels over a pluggable stack (aiortc, or libwebrtc compiled), offer/answer
over HTTP, ICE servers and TURN credentials, and a hub's direct path beside it.

* :mod:`.channel`: the DataChannel transport (one RSocket frame per message, send-side
  backpressure on ``bufferedAmount``).
* :mod:`.stack`: what a stack must provide; :mod:`.aiortc_stack` and :mod:`.native_stack` provide it.
* :mod:`.offerer` (dial a hub), :mod:`.answerer` (answer offers), :mod:`.signaling` (a
  hub's HTTP routes: ``/offer``, ``/ice-servers``, the direct WebSocket at ``/rsocket``;
  dialing an ``http://`` hub by the path ``via`` asks for).
* :mod:`.ice` (ICE servers, TURN REST credentials, peer-address policy, signaling limits),
  :mod:`.offers` (what an offer is checked for before it costs anything; request signing),
  :mod:`.gathering` (aioice's hooks: host addresses, UDP ports, why a relay failed).
* :mod:`.options`: :class:`WebRtcOptions`, everything above in one object.

Nothing here is imported by ``import rxchannel``: WebRTC loads when an ``http://`` URL is
dialed or served.
"""

from __future__ import annotations

from .ice import IceServer, PeerAddressPolicy, SignalingLimits, TurnRest
from .options import VIAS, WebRtcOptions
from .stack import STACKS, available_stacks, default_stack, get_stack

__all__ = [
    "STACKS",
    "VIAS",
    "IceServer",
    "PeerAddressPolicy",
    "SignalingLimits",
    "TurnRest",
    "WebRtcOptions",
    "available_stacks",
    "default_stack",
    "get_stack",
]
