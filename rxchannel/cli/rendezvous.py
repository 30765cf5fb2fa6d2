"""``rxchannel rendezvous``: signaling for hubs with no inbound port (see :mod:`rxchannel.webrtc.rendezvous`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from rxchannel.transports import ListenLimits
from rxchannel.webrtc.rendezvous import RendezvousLimits, RendezvousLink, serve_rendezvous

from .errors import UsageError, cannot_listen
from .logs import configure_logging

__all__ = ["cmd_rendezvous", "register_link"]


async def cmd_rendezvous(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, as_json=args.log_json)
    if not args.secret:
        raise UsageError(
            "a rendezvous needs --secret S (or $RXCHANNEL_RENDEZVOUS_SECRET): only hubs that know it may register "
            "(rxchannel serve ROOT --rendezvous URL --name NAME --rendezvous-secret S)"
        )
    limits = RendezvousLimits(max_hubs=args.max_hubs, request_rate=args.request_rate)
    try:
        listen = ListenLimits(max_connections=args.max_connections, max_per_address=max(1, args.max_connections // 8))
        server = await serve_rendezvous(args.secret, args.host, args.port, limits=limits, listen=listen)
    except OSError as exc:
        raise cannot_listen(args.host, args.port, exc) from None
    for url in server.listener.urls:
        print(url, flush=True)
    print(
        "rendezvous: hubs register with --rendezvous URL --name NAME; workers dial URL/hubs/NAME; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.listener.close()
    return 0


async def register_link(args: argparse.Namespace, local: str, relay: str) -> RendezvousLink:
    """Register at ``--rendezvous``, relaying to the hub's listener at ``local`` (marked with ``relay``).

    Raises:
        UsageError: the flags cannot work (no --name, no secret, not a WebRTC hub), or the
            rendezvous refused the hub (a wrong secret, a name taken) or cannot be reached.
    """
    if args.transport != "webrtc":
        raise UsageError("--rendezvous needs the WebRTC transport: a rendezvous relays WebRTC signaling")
    if not args.name or not args.rendezvous_secret:
        raise UsageError("--rendezvous needs --name NAME and --rendezvous-secret S (the rendezvous's --secret)")
    try:
        link = RendezvousLink(args.rendezvous, args.name, args.rendezvous_secret, local=local, relay=relay)
        await link.start()
    except (ValueError, ConnectionError) as exc:
        raise UsageError(f"cannot register at the rendezvous: {exc}") from None
    return link
