"""Transports by URL scheme: one table says how each kind is dialed and served.

Adding a transport means writing its module (a :class:`~._base.Transport`, plus
``dial(url, options)`` and ``listen(host, port, on_transport, options)``) and one entry
in :data:`KINDS`. Modules are imported only when used, so ``import rxchannel`` does not
load aiohttp or aiortc.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._base import Listener, Transport, TransportOptions, WrongTransportError

__all__ = [
    "KINDS",
    "RENDEZVOUS_PATH",
    "Kind",
    "dial",
    "hub_url",
    "is_rendezvous_path",
    "kind_of",
    "listen",
    "wrong_transport",
]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of transport: its name, the URL schemes that dial it, its module, and the
    paths its URLs may have (the first is the one its hubs print)."""

    name: str
    schemes: tuple[str, ...]
    module: str
    description: str
    paths: tuple[str, ...] = ("",)


#: Every transport rxchannel can dial by URL or serve, by name.
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "webrtc",
            ("http", "https"),
            "rxchannel.webrtc.signaling",
            "WebRTC DataChannel (offer/answer over HTTP), or the hub's direct WebSocket",
            ("", "/"),
        ),
        Kind(
            "ws",
            ("ws", "wss"),
            "rxchannel.transports.websocket",
            "WebSocket at /rsocket",
            ("/rsocket", "/rsocket/", "", "/"),
        ),
        Kind("tcp", ("tcp",), "rxchannel.transports.tcp", "TCP with RSocket's length prefix", ("", "/")),
    )
}

_EXAMPLES = "http://host:port (WebRTC), ws://host:port/rsocket or tcp://host:port"


def kind_of(url: str) -> Kind:
    """The kind of transport a URL dials.

    Raises:
        ValueError: an unsupported or malformed URL, or one with a path its kind does not
            serve (``http://hub:8765/data.bin``: files are named apart from the hub's URL),
            saying what to use instead.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL ({exc}): use {_EXAMPLES}") from None
    for kind in KINDS.values():
        if parts.scheme in kind.schemes and parts.hostname:
            if kind.name == "webrtc" and is_rendezvous_path(parts.path) and not parts.query and not parts.fragment:
                return kind
            if parts.path not in kind.paths or parts.query or parts.fragment:
                raise ValueError(
                    f"{url!r} is not a hub URL: a {kind.name} hub is dialed as {hub_url(url, kind.name)} "
                    "(name files and routes separately, not in the URL)"
                )
            return kind
    raise ValueError(f"unsupported URL {url!r}: use {_EXAMPLES}")


#: A hub reached through a rendezvous: ``http://rendezvous:port/hubs/NAME`` (:mod:`rxchannel.webrtc.rendezvous`).
RENDEZVOUS_PATH = re.compile(r"^/hubs/([A-Za-z0-9][A-Za-z0-9._-]{0,62})/?$")


def is_rendezvous_path(path: str) -> bool:
    """True for ``/hubs/NAME``: the URL names a hub registered at a rendezvous."""
    return RENDEZVOUS_PATH.match(path) is not None


def hub_url(url: str, kind: str) -> str:
    """The URL of a ``kind`` hub at ``url``'s host and port (``http://h:p``, ``ws://h:p/rsocket``, ``tcp://h:p``)."""
    found = KINDS[kind]
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    scheme = found.schemes[1 if secure and len(found.schemes) > 1 else 0]
    return f"{scheme}://{parts.netloc}{found.paths[0]}"


def wrong_transport(url: str, answered: str | None) -> WrongTransportError:
    """The error for a hub at ``url`` that answered as another kind (``answered``; ``None``: unknown)."""
    if answered in KINDS:
        return WrongTransportError(
            f"{url} is a {answered} hub, not a {kind_of(url).name} one: dial {hub_url(url, answered)}"
        )
    return WrongTransportError(
        f"{url} answered, but not as a {kind_of(url).name} hub: dial the URL its 'rxchannel serve' printed"
    )


def _module(kind: Kind) -> Any:
    return importlib.import_module(kind.module)


async def dial(url: str, options: TransportOptions | None = None) -> Transport:
    """Dial ``url`` and return the connected transport.

    Raises:
        ValueError: an unsupported URL.
        ConnectionError / TimeoutError: nothing answers there.
    """
    transport: Transport = await _module(kind_of(url)).dial(url, options or TransportOptions())
    return transport


async def listen(
    kind: str,
    host: str,
    port: int,
    on_transport: Callable[[Any], object],
    options: TransportOptions | None = None,
) -> Listener:
    """Listen for ``kind`` transports on ``host:port``; each accepted one goes to ``on_transport``.

    Raises:
        ValueError: an unknown kind, saying which exist.
    """
    found = KINDS.get(kind)
    if found is None:
        raise ValueError(f"unknown transport {kind!r}: use one of {', '.join(KINDS)}")
    listener: Listener = await _module(found).listen(host, port, on_transport, options or TransportOptions())
    return listener
