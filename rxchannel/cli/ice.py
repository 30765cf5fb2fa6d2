"""ICE, TURN and signaling options of ``serve``, ``fetch`` and ``send``, and the path a dial reports
(names: docs/architecture.md, "URLs and exit codes").

The parser only calls :func:`add_ice_options`; the commands build their
:class:`~rxchannel.transports.TransportOptions` with :func:`options_from`.

Both sides: ``--ice-server URL`` (repeatable: ``stun:``, ``turn:``, ``turns:``) with
``--ice-username``/``--ice-credential`` for its TURN URLs, or ``RXCHANNEL_ICE_SERVERS``
(a JSON list of W3C ``RTCIceServer`` dictionaries; ignored when ``--ice-server`` is
given); the dialing commands take ``--ice-timeout``. The hub also takes ``--turn-url``/``--turn-secret``
(``RXCHANNEL_TURN_SECRET``)/``--turn-ttl``, ``--udp-ports LO-HI`` and the signaling
limits of issue 11 (cases 7 and 8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from rxchannel.core import RxChannelError
from rxchannel.runtime import Peer
from rxchannel.transports import TransportOptions
from rxchannel.webrtc.ice import (
    IceServer,
    PeerAddressPolicy,
    SignalingLimits,
    TurnRest,
    ice_servers_from_json,
    parse_port_range,
)
from rxchannel.webrtc.options import VIAS, WebRtcOptions
from rxchannel.webrtc.stack import STACKS, default_stack, either_path

from .values import count, positive_float, seconds

__all__ = ["add_ice_options", "add_path_options", "agree_on_path", "options_from"]

_DEFAULTS = SignalingLimits()


def _port_range(text: str) -> tuple[int, int]:
    try:
        return parse_port_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_path_options(parser: argparse.ArgumentParser, *, hub: bool, dials: bool = True) -> None:
    """``--webrtc-stack`` (both sides), ``--via`` (a worker) or ``--no-direct`` (a hub)."""
    group = parser.add_argument_group("paths")
    group.add_argument(
        "--webrtc-stack",
        choices=tuple(STACKS),
        default=None,
        help=f"the WebRTC stack: native (libwebrtc, compiled) or aiortc (pure Python); default: native when "
        f"installed (here: {default_stack()}), except on loopback, where libwebrtc cannot gather",
    )
    if hub:
        group.add_argument(
            "--no-direct",
            action="store_true",
            help="serve WebRTC only: no RSocket over a WebSocket at /rsocket on the HTTP port",
        )
    elif dials:
        group.add_argument(
            "--via",
            choices=VIAS,
            default="auto",
            help="how to reach an http:// hub: auto takes the hub's direct WebSocket when it opens, else WebRTC "
            "(default auto); direct or webrtc take only that path",
        )


def add_ice_options(parser: argparse.ArgumentParser, *, hub: bool) -> None:
    """Add the ICE options to a subcommand's parser (``hub``: also TURN minting, ports, limits)."""
    group = parser.add_argument_group("WebRTC / ICE")
    group.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN server (repeatable): stun:HOST[:PORT], turn:HOST[:PORT][?transport=tcp], turns:HOST[:PORT]; "
        "default: $RXCHANNEL_ICE_SERVERS (JSON list of RTCIceServer), else none (no STUN)",
    )
    group.add_argument("--ice-username", metavar="U", help="username for the --ice-server TURN URLs")
    group.add_argument("--ice-credential", metavar="C", help="credential for the --ice-server TURN URLs")
    if not hub:  # only the dialing side waits for a candidate pair; a hub answers
        group.add_argument(
            "--ice-timeout",
            **seconds("an ICE timeout", 4.0),
            help="give up when no ICE candidate pair works this long after the hub's answer (default 4)",
        )
        return
    group.add_argument(
        "--turn-url",
        action="append",
        default=[],
        metavar="URL",
        help="TURN server with coturn use-auth-secret: the hub relays through it and hands workers "
        "time-limited credentials (repeatable for turn:/turns: of one server)",
    )
    group.add_argument(
        "--turn-secret",
        default=os.environ.get("RXCHANNEL_TURN_SECRET"),
        metavar="S",
        help="coturn's static-auth-secret (default: $RXCHANNEL_TURN_SECRET)",
    )
    group.add_argument(
        "--turn-ttl",
        **count("a TTL", 86400, "SECONDS"),
        help="lifetime of minted TURN credentials; keep it above the longest transfer (default 86400)",
    )
    group.add_argument(
        "--udp-ports", type=_port_range, metavar="LO-HI", help="UDP ports for the hub's ICE host candidates"
    )
    limits = parser.add_argument_group("WebRTC signaling limits")
    limits.add_argument(
        "--max-pending-offers",
        **count("an offer count", _DEFAULTS.max_pending),
        help=f"answered offers whose channel has not opened yet (default {_DEFAULTS.max_pending}; "
        f"a quarter of it, at least {_DEFAULTS.max_pending_per_address}, per address)",
    )
    limits.add_argument(
        "--offer-rate",
        type=positive_float("a rate", "offers per second"),
        default=_DEFAULTS.offer_rate,
        metavar="PER_S",
        help=f"offers per second per client address (default {_DEFAULTS.offer_rate:g}, "
        f"bursts of {_DEFAULTS.offer_burst})",
    )
    limits.add_argument(
        "--max-offer-bytes",
        **count("a size in bytes", _DEFAULTS.max_offer_bytes, "BYTES"),
        help=f"largest offer SDP (default {_DEFAULTS.max_offer_bytes})",
    )
    limits.add_argument(
        "--max-candidates",
        **count("a candidate count", _DEFAULTS.max_candidates),
        help=f"most ICE candidates in one offer (default {_DEFAULTS.max_candidates})",
    )
    limits.add_argument(
        "--denied-peer-ip",
        action="append",
        default=[],
        metavar="NET",
        help="never send ICE checks to this address or network (repeatable; loopback, link-local, "
        "multicast and reserved ranges are always denied unless allowed)",
    )
    limits.add_argument(
        "--allowed-peer-ip",
        action="append",
        default=[],
        metavar="NET",
        help="exempt this address or network from the denied ones (repeatable)",
    )


def _ice_servers(args: argparse.Namespace) -> list[IceServer]:
    """The ICE servers from the command line, else from ``RXCHANNEL_ICE_SERVERS``.

    Raises:
        ValueError: a malformed server, or credentials without a TURN URL.
    """
    urls: list[str] = args.ice_server
    if (args.ice_username or args.ice_credential) and not any(u.startswith("turn") for u in urls):
        raise ValueError("--ice-username/--ice-credential apply to --ice-server turn: URLs, and none was given")
    if urls:
        return [IceServer.parse(url, args.ice_username, args.ice_credential) for url in urls]
    env = os.environ.get("RXCHANNEL_ICE_SERVERS")
    return ice_servers_from_json(env) if env else []


def options_from(args: argparse.Namespace, **extra: Any) -> TransportOptions:
    """The transport options the parsed ``args`` ask for (``extra`` sets further fields).

    Raises:
        ValueError: the options cannot be used together; the message says how to fix them.
    """
    webrtc: dict[str, Any] = {
        "ice_servers": _ice_servers(args),
        "ice_timeout": getattr(args, "ice_timeout", 4.0),  # only a dialing command has --ice-timeout
        "stack": getattr(args, "webrtc_stack", None),
        "via": getattr(args, "via", "auto"),
        "direct": not getattr(args, "no_direct", False),
    }
    fields: dict[str, Any] = {"secret": getattr(args, "secret", None) or None}
    if getattr(args, "connect_timeout", None) is not None:
        fields["timeout"] = args.connect_timeout
    if hasattr(args, "turn_url"):
        if args.turn_url or args.turn_secret:
            if not args.turn_url:
                raise ValueError("--turn-secret needs --turn-url turn:HOST:3478")
            webrtc["turn"] = TurnRest(tuple(args.turn_url), args.turn_secret or "", args.turn_ttl)
        peers = PeerAddressPolicy.build(args.denied_peer_ip, args.allowed_peer_ip)
        webrtc["signaling"] = SignalingLimits(
            max_offer_bytes=args.max_offer_bytes,
            max_candidates=args.max_candidates,
            max_pending=args.max_pending_offers,
            max_pending_per_address=max(_DEFAULTS.max_pending_per_address, args.max_pending_offers // 4),
            offer_rate=args.offer_rate,
            peers=peers,
        )
        webrtc["udp_ports"] = args.udp_ports
    if webrtc["stack"] is not None:
        from rxchannel.webrtc.stack import get_stack

        get_stack(webrtc["stack"])  # not installed: say so now, with how to install it
    fields["webrtc"] = WebRtcOptions(**webrtc)
    fields.update(extra)
    return TransportOptions(**fields)


async def agree_on_path(peer: Peer, *, timeout: float = 5.0) -> None:
    """Over WebRTC, ask the hub which path it sees (route ``path``) and report the wider of
    the two views: a libwebrtc worker relayed through the hub's TURN allocation sees only its
    own host candidate. A hub without the route, or slow to answer, leaves our view as it is."""
    ours = peer.transport.path
    if not ours.startswith("webrtc") or ours == "webrtc-relay":
        return
    try:
        reply = await asyncio.wait_for(peer.request_response("path"), timeout)
        theirs = json.loads(reply.data).get("path")
    except (RxChannelError, TimeoutError, ValueError, AttributeError, RecursionError):
        return  # only what we report is at stake: never a reason to fail the command
    peer.transport.path = either_path(ours, theirs)
