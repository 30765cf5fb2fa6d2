"""The items users send and receive."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Payload", "as_payload"]


@dataclass(frozen=True, slots=True)
class Payload:
    """One item: data, and optional metadata.

    ``last=True`` on an item a source yields says it is the stream's last: it goes out as
    one PAYLOAD with NEXT|COMPLETE, and the source is not pulled again. A source that
    knows its length (a file, a single receipt) should say so; any other source's end is
    found by pulling one item ahead, which needs no credit (Reactive Streams §2.9:
    onComplete needs no demand). ``last`` is a hint for sending and is not compared.
    """

    data: bytes = b""
    metadata: bytes | None = None
    last: bool = field(default=False, compare=False, kw_only=True)

    def __repr__(self) -> str:
        data = repr(self.data) if len(self.data) <= 16 else f"<{len(self.data)} bytes>"
        meta = "" if self.metadata is None else f", metadata=<{len(self.metadata)} bytes>"
        return f"Payload({data}{meta}{', last=True' if self.last else ''})"


def as_payload(item: object) -> Payload:
    """Accept ``Payload``, ``bytes``-like, or ``str`` (UTF-8) as an item to send.

    Raises:
        TypeError: anything else, saying what a source may yield.
    """
    if isinstance(item, Payload):
        return item
    if isinstance(item, bytes):
        return Payload(item)
    if isinstance(item, (bytearray, memoryview)):
        return Payload(bytes(item))
    if isinstance(item, str):
        return Payload(item.encode())
    raise TypeError(f"cannot send a {type(item).__name__}: yield bytes, str or rxchannel.Payload")
