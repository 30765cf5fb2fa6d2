"""The aiortc stack: pure Python WebRTC, always installed.

aiortc's ``RTCDataChannel`` already has the surface :class:`~.stack.Channel` describes,
and delivers its events on the loop in order, so channels are passed through as they are.
aiortc marks a remote channel open and emits ``datachannel`` before it processes the
next chunk of the SCTP packet that opened it (a browser puts its first messages there):
:meth:`AiortcPeer.on_channel`'s callback runs in that ``datachannel`` event, before them.

Gathering is steered by :mod:`.gathering`'s aioice hooks (host addresses, UDP ports,
why a relay failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from .gathering import gathering
from .ice import IceServer
from .stack import Channel, Gathered, PeerStack, W3cPeer

__all__ = ["STACK", "AiortcPeer", "AiortcStack", "rtc_peer_connection"]


def rtc_peer_connection(ice_servers: Sequence[IceServer | str] = ()) -> RTCPeerConnection:
    """A bare aiortc ``RTCPeerConnection`` with exactly these ICE servers (none by default: no
    STUN; aiortc contacts a public STUN server when given none at all). aiortc uses the
    first STUN and the first TURN server only."""
    servers = [s if isinstance(s, IceServer) else IceServer.parse(s) for s in ice_servers]
    config = [RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential) for s in servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=config))


class AiortcPeer(W3cPeer):
    """An aiortc ``RTCPeerConnection`` behind :class:`~.stack.PeerConnection`."""

    stack = "aiortc"

    def __init__(self, ice_servers: Sequence[IceServer | str] = ()):
        self.pc = rtc_peer_connection(ice_servers)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    @property
    def ice_state(self) -> str:
        return str(self.pc.iceConnectionState)

    @property
    def local_sdp(self) -> str | None:
        description = self.pc.localDescription
        return None if description is None else str(description.sdp)

    @property
    def remote_sdp(self) -> str | None:
        description = self.pc.remoteDescription
        return None if description is None else str(description.sdp)

    def create_channel(self, label: str) -> Channel:
        channel: Channel = self.pc.createDataChannel(label, ordered=True)
        return channel

    async def _set_local(
        self, description: Any, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None
    ) -> Gathered:
        with gathering(hosts, udp_ports) as gathered:
            await self.pc.setLocalDescription(description)  # gathers candidates (aiortc waits for completion)
        return Gathered(gathered.failures)

    async def offer(self, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None) -> Gathered:
        return await self._set_local(await self.pc.createOffer(), hosts, udp_ports)

    async def answer(self, offer_sdp: str, hosts: Sequence[str] | None, udp_ports: tuple[int, int] | None) -> Gathered:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc's SDP parser raises many kinds on hostile input
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        return await self._set_local(await self.pc.createAnswer(), hosts, udp_ports)

    async def accept(self, answer_sdp: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except Exception as exc:  # aiortc's parser raises many kinds on a bad answer
            raise ValueError(f"{type(exc).__name__}: {exc}") from None

    def transport_closed(self) -> bool:
        sctp = self.pc.sctp
        return sctp is None or sctp.state == "closed" or self.pc.connectionState == "failed"

    def candidate_types(self) -> tuple[str, str] | None:
        sctp: Any = self.pc.sctp
        try:
            connection = sctp.transport.transport._connection  # aioice's Connection
            pair = next(iter(connection._nominated.values()))
        except (AttributeError, StopIteration):
            return None
        return str(pair.local_candidate.type), str(pair.remote_candidate.type)


class AiortcStack(PeerStack):
    name = "aiortc"
    connection_class = AiortcPeer


STACK = AiortcStack()
