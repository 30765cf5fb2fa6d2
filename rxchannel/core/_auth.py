"""Shared-secret authentication of peers in SETUP (RSocket's Authentication extension, bearer type).

The client puts ``message/x.rsocket.authentication.v0`` with a bearer token in its SETUP
metadata; a server configured with the same secret accepts it and refuses anything else
with ERROR[REJECTED_SETUP], before any request is processed. Tokens are compared in
constant time. (Without TLS the secret crosses the wire in clear: over WebRTC it rides
inside DTLS; over plain TCP or ws:// use it on trusted networks only.)
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable

from ._config import ConnectionConfig
from ._frames import SetupFrame
from ._metadata import AUTHENTICATION, MetadataError, decode_composite, encode_composite

__all__ = ["bearer_metadata", "require_secret", "with_secret"]

_BEARER = 0x81  # well-known auth type "bearer", with the well-known bit set


def bearer_metadata(token: str) -> bytes:
    """Composite metadata carrying a bearer token."""
    return encode_composite([(AUTHENTICATION, bytes([_BEARER]) + token.encode())])


def _bearer_token(metadata: bytes | None) -> bytes | None:
    if not metadata:
        return None
    try:
        entries = decode_composite(metadata)
    except MetadataError:
        return None
    for mime, content in entries:
        if mime == AUTHENTICATION and content[:1] == bytes([_BEARER]):
            return content[1:]
    return None


def require_secret(secret: str) -> Callable[[SetupFrame], str | None]:
    """A ``setup_check`` accepting only clients that present ``secret``."""
    expected = secret.encode()

    def check(setup: SetupFrame) -> str | None:
        token = _bearer_token(setup.metadata)
        if token is None:
            return "authentication required: connect with the hub's shared secret (--secret)"
        if not hmac.compare_digest(token, expected):
            return "authentication failed: wrong shared secret"
        return None

    return check


def with_secret(config: ConnectionConfig | None, secret: str | None, *, server: bool) -> ConnectionConfig | None:
    """``config`` with the secret applied: the server checks it, the client presents it; resume
    tokens are minted and checked with it (a session cannot be resumed by another identity)."""
    if not secret:
        return config
    config = config or ConnectionConfig()
    if server:
        return dataclasses.replace(config, setup_check=require_secret(secret), resume_secret=secret)
    return dataclasses.replace(config, setup_metadata=bearer_metadata(secret), resume_secret=secret)
