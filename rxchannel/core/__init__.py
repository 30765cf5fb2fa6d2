"""Sans-IO RSocket 1.0: frames, connection and stream state machines, credit and demand.

Standard library only; no I/O, no clock (time is always an argument). The runtime in
:mod:`rxchannel.runtime` binds a :class:`Connection` to a transport.
"""

from __future__ import annotations

from ._auth import bearer_metadata, require_secret, with_secret
from ._config import ConnectionConfig, Role
from ._connection import Connection
from ._credit import InboundDemand, ReplenishPolicy, SendCredit, check_request_n
from ._errors import (
    ApplicationError,
    ClosedResourceError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    RemoteError,
    RemoteProtocolError,
    RxChannelError,
    SetupRejectedError,
    StreamCancelledError,
)
from ._events import (
    ConnectionClosed,
    CreditGranted,
    Event,
    InboundCompleted,
    Interaction,
    MetadataPushed,
    PayloadReceived,
    RequestReceived,
    SetupReceived,
    StreamCancelled,
    StreamErrored,
)
from ._fragments import MIN_FRAME_SIZE, Budget
from ._frames import (
    MAX_FRAME_SIZE,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    Frame,
    FrameDecodeError,
    FrameType,
    KeepaliveFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from ._framing import LengthPrefixDecoder, prefix
from ._metadata import (
    AUTHENTICATION,
    MetadataError,
    decode_composite,
    decode_route,
    encode_composite,
    encode_route,
    parse_request_metadata,
    request_metadata,
)
from ._policies import DEFAULT_WINDOW, Adaptive, LimitRate, Manual, Window, policy_for

__all__ = [
    "AUTHENTICATION",
    "DEFAULT_WINDOW",
    "MAX_FRAME_SIZE",
    "MAX_REQUEST_N",
    "MIN_FRAME_SIZE",
    "Adaptive",
    "ApplicationError",
    "Budget",
    "CancelFrame",
    "ClosedResourceError",
    "Connection",
    "ConnectionClosed",
    "ConnectionConfig",
    "ConnectionLostError",
    "CreditGranted",
    "ErrorCode",
    "ErrorFrame",
    "Event",
    "Frame",
    "FrameDecodeError",
    "FrameType",
    "InboundCompleted",
    "InboundDemand",
    "Interaction",
    "KeepaliveFrame",
    "LengthPrefixDecoder",
    "LimitRate",
    "LocalProtocolError",
    "Manual",
    "MetadataError",
    "MetadataPushFrame",
    "MetadataPushed",
    "PayloadFrame",
    "PayloadReceived",
    "RemoteError",
    "RemoteProtocolError",
    "ReplenishPolicy",
    "RequestFrame",
    "RequestNFrame",
    "RequestReceived",
    "Role",
    "RxChannelError",
    "SendCredit",
    "SetupFrame",
    "SetupReceived",
    "SetupRejectedError",
    "StreamCancelled",
    "StreamCancelledError",
    "StreamErrored",
    "Window",
    "bearer_metadata",
    "check_request_n",
    "decode_composite",
    "decode_frame",
    "decode_route",
    "encode_composite",
    "encode_frame",
    "encode_route",
    "parse_request_metadata",
    "policy_for",
    "prefix",
    "request_metadata",
    "require_secret",
    "with_secret",
]
