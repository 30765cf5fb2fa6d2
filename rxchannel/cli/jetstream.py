"""``rxchannel serve ROOT --nats nats://HOST:PORT``: the hub's queue and broadcast routes on JetStream.

The options are here and the routes in :mod:`rxchannel.nats` (the ``[nats]`` extra), which is
imported only when ``--nats`` is given: a hub without it needs no nats-py.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from rxchannel.runtime import Router

from .errors import UsageError
from .values import count, seconds

__all__ = ["add_jetstream_options", "attach_jetstream"]


def _nats_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not a NATS URL: use nats://HOST:PORT (or tls://HOST:PORT)")
    return text


def add_jetstream_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("JetStream (several hubs serving one fleet; needs the [nats] extra)")
    group.add_argument(
        "--nats",
        type=_nats_url,
        metavar="URL",
        help="serve queue/NAME (work queues) and broadcast/TOPIC from NATS JetStream at URL (nats://HOST:PORT): "
        "every hub given the same URL serves the same queues",
    )
    group.add_argument(
        "--nats-ack-wait",
        **seconds("an ack wait", 30.0),
        help="for a queue this hub creates: seconds JetStream waits for a job's answer before redelivering it, "
        "e.g. after a hub died holding it (default 30)",
    )
    group.add_argument(
        "--nats-replicas",
        **count("a replica count", 1),
        help="for a queue this hub creates: copies of its stream on a JetStream cluster (3 on a three-server "
        "cluster: the queue survives the loss of a server; default 1)",
    )


async def attach_jetstream(args: argparse.Namespace, router: Router) -> Callable[[], Awaitable[None]] | None:
    """With ``--nats``: connect and register the routes; returns what closes them (None without it).

    Raises:
        UsageError: nats-py is not installed, NATS cannot be reached, or it has no JetStream.
    """
    if not getattr(args, "nats", None):
        return None
    try:
        from rxchannel.nats import JetStreamError, JetStreamRoutes, connect_jetstream
    except ImportError:
        raise UsageError("--nats needs nats-py: pip install 'rxchannel[nats]'") from None
    try:
        nc = await connect_jetstream(args.nats, name="rxchannel hub")
    except JetStreamError as exc:
        raise UsageError(f"cannot serve from JetStream: {exc}") from None
    routes = JetStreamRoutes(
        nc, owns_connection=True, ack_wait=args.nats_ack_wait, replicas=args.nats_replicas
    ).install(router)
    return routes.close
