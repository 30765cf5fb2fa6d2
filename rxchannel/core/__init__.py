"""Sans-IO RSocket 1.0: frames, connection and stream state machines, credit.

Standard library only; no I/O, no clock (time is always an argument). The runtime in
:mod:`rxchannel.peer` binds a :class:`Connection` to a transport.
"""

from __future__ import annotations

from ._connection import Connection, ConnectionConfig, Role
from ._credit import Adaptive, LimitRate, Manual, ReceiveCredit, ReplenishPolicy, SendCredit, Window, check_request_n
from ._errors import (
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
from ._fragments import MIN_FRAME_SIZE
from ._frames import MAX_FRAME_SIZE, MAX_REQUEST_N, FrameDecodeError, FrameType, decode_frame, encode_frame
from ._framing import LengthPrefixDecoder, prefix
from ._metadata import (
    MetadataError,
    decode_composite,
    decode_route,
    encode_composite,
    encode_route,
    parse_request_metadata,
    request_metadata,
)

__all__ = [
    "Adaptive",
    "MAX_FRAME_SIZE",
    "MAX_REQUEST_N",
    "MIN_FRAME_SIZE",
    "ClosedResourceError",
    "Connection",
    "ConnectionClosed",
    "ConnectionConfig",
    "ConnectionLostError",
    "CreditGranted",
    "ErrorCode",
    "Event",
    "FrameDecodeError",
    "FrameType",
    "InboundCompleted",
    "Interaction",
    "LengthPrefixDecoder",
    "LimitRate",
    "LocalProtocolError",
    "Manual",
    "MetadataError",
    "MetadataPushed",
    "PayloadReceived",
    "ReceiveCredit",
    "RemoteError",
    "RemoteProtocolError",
    "ReplenishPolicy",
    "RequestReceived",
    "Role",
    "RxChannelError",
    "SendCredit",
    "SetupReceived",
    "SetupRejectedError",
    "StreamCancelled",
    "StreamCancelledError",
    "StreamErrored",
    "Window",
    "check_request_n",
    "decode_composite",
    "decode_frame",
    "decode_route",
    "encode_composite",
    "encode_frame",
    "encode_route",
    "parse_request_metadata",
    "prefix",
    "request_metadata",
]
