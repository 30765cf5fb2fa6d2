"""A JetStream pull consumer as a demand source: credit becomes pull requests, consumption becomes acks.

The demand is the one engine of rxchannel (:class:`~rxchannel.core.InboundDemand` and its
policies), with JetStream underneath instead of a wire: every grant it makes is asked of
the server as a pull request for exactly that many (:class:`~._wire.Puller`), an item
counts as consumed when the downstream takes the next one (or when ``acks=`` says so), and
consuming it acks it in JetStream. So a window of 8 means at most 8 messages of this
subscription are delivered and unacknowledged on the server (its ``num_ack_pending``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import APIError, NotFoundError

from rxchannel.core import (
    Adaptive,
    InboundDemand,
    LocalProtocolError,
    ReplenishPolicy,
    Window,
    WindowSpec,
    policy_for,
)
from rxchannel.reactive import Demand, DemandObservable
from rxchannel.reactive.observable import PENDING
from rxchannel.runtime.closing import ClosesOnExit

from ._message import InProgress, Message, Nak, Term
from ._wire import ACK, NAK, PROGRESS, TERM, JetStreamError, Outbox, Puller

__all__ = ["ConsumerTarget", "JetStreamPull", "JetStreamSource", "jetstream_source"]

log = logging.getLogger("rxchannel.nats")

Verdict = int | Nak | Term | InProgress


@dataclass(frozen=True, slots=True)
class ConsumerTarget:
    """Which pull consumer a source reads: a durable one by name (created if missing and
    ``create``), or, with no name, an ephemeral one per subscription (its own cursor, deleted
    when the subscription ends)."""

    stream: str
    durable: str | None = None
    subject: str | None = None
    config: ConsumerConfig | None = None
    create: bool = True

    async def open(self, nc: Client, window: int) -> str:
        """The consumer's name, once it exists.

        Raises:
            JetStreamError: the stream does not exist, or the consumer does not and may not be created.
        """
        js = nc.jetstream()
        name = self.durable
        if name is not None:
            try:
                await js.consumer_info(self.stream, name)
                return name
            except NotFoundError as exc:
                if not self.create:
                    raise JetStreamError(
                        f"stream {self.stream!r} has no consumer {name!r} (create it, or pass create=True)",
                        exc.err_code or 0,
                    ) from None
        config = self.config or ConsumerConfig()
        changes: dict[str, Any] = {"ack_policy": AckPolicy.EXPLICIT}
        if config.max_ack_pending is None:
            changes["max_ack_pending"] = window  # the server holds the window too
        if self.subject is not None and not config.filter_subject:
            changes["filter_subject"] = self.subject
        if name is not None:
            changes.update(durable_name=name, name=name)
        else:
            name = secrets.token_hex(8)
            changes["name"] = name
            if config.inactive_threshold is None:
                changes["inactive_threshold"] = 60.0  # a subscriber that vanished leaves no consumer behind
        try:
            await js.add_consumer(self.stream, config.evolve(**changes))
        except APIError as exc:
            raise JetStreamError(
                f"cannot create a consumer on stream {self.stream!r}: {exc.description}", exc.err_code or 0
            ) from None
        return name

    @property
    def ephemeral(self) -> bool:
        return self.durable is None


def window_of(policy: ReplenishPolicy | None, default: int) -> int:
    """The most a policy keeps in flight (for the consumer's ``max_ack_pending``)."""
    if isinstance(policy, Window):
        return policy.size
    if isinstance(policy, Adaptive):
        return policy.max_window
    return default


class JetStreamPull(ClosesOnExit):
    """One subscription's pull stream on a consumer: an async iterator of :class:`Message` s.

    Demand is an :class:`~rxchannel.core.InboundDemand` with the subscription's policy;
    each grant is one pull request (never more messages delivered than granted). With
    ``auto_ack`` a message is acked in JetStream when the next one is asked for; otherwise
    by :meth:`ack` (or a verdict: :meth:`nak`, :meth:`term`). :meth:`in_progress` tells
    JetStream that the messages in hand are still being worked on. Leaving (``aclose``,
    ``break``, an error) hands back every message not acknowledged: JetStream redelivers it.

    A message carrying the ``Rxc-End`` header (a bridged stream's end) ends the iteration:
    ``complete`` normally, ``error`` with the error the stream's source failed with.
    """

    def __init__(
        self,
        nc: Client,
        target: ConsumerTarget,
        policy: ReplenishPolicy | None,
        auto_ack: bool,
        *,
        expires: float = 5.0,
        max_bytes: int | None = None,
        window: int = 16,
    ):
        self._nc = nc
        self._target = target
        self._loop = asyncio.get_running_loop()
        self.demand = InboundDemand(policy, auto_ack=auto_ack)
        self._window = window_of(policy, window)
        self._expires = expires
        self._max_bytes = max_bytes
        self._outbox = Outbox(nc)
        self._puller: Puller | None = None
        self._opening: asyncio.Task[None] | None = None
        self._waiting: deque[Message] = deque()  # arrived, not taken
        self._taken: deque[Message] = deque()  # taken, not acknowledged, oldest first
        self._wake = asyncio.Event()
        self._unasked = 0  # granted before the puller existed
        self._error: BaseException | None = None
        self._ended = False
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        #: the consumer's name, once open
        self.consumer: str | None = None
        self.acked = self.nacked = self.termed = 0
        self._grant(self.demand.start(self._loop.time()))

    # ------------------------------------------------------------ opening, arrivals

    def _grant(self, n: int) -> None:
        if n <= 0:
            return
        if self._puller is not None:
            self._puller.want(n)
        else:
            self._unasked += n

    async def _start(self) -> None:
        if self._opening is None:
            self._opening = self._loop.create_task(self._open())
        await asyncio.shield(self._opening)

    async def _open(self) -> None:
        try:
            self.consumer = await self._target.open(self._nc, self._window)
            puller = Puller(
                self._nc,
                self._target.stream,
                self.consumer,
                self._arrived,
                self._failed,
                self._outbox,
                expires=self._expires,
                max_bytes=self._max_bytes,
            )
            puller.want(self._unasked)
            self._unasked = 0
            self._puller = puller
            await puller.start()
        except Exception as exc:
            self._failed(exc if isinstance(exc, JetStreamError) else JetStreamError(f"JetStream: {exc!r}"))

    def _arrived(self, msg: Msg) -> None:
        if self._closed:
            self._outbox.send(msg.reply, NAK)
            return
        if not self.demand.received(len(msg.data), self._loop.time()):
            self._outbox.send(msg.reply, NAK)  # beyond the demand (the puller never asks for that)
            log.error("a JetStream message arrived beyond the demand; it was handed back")
            return
        self._waiting.append(Message.from_msg(msg))
        self._wake.set()

    def _failed(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake.set()

    # ------------------------------------------------------------ the PullStream verbs

    def _check_end(self) -> None:
        if self._error is not None:
            raise self._error
        if self._ended or self._closed:
            raise StopAsyncIteration

    def _take(self) -> Message:
        message = self._waiting.popleft()
        self.demand.pulled()
        end = message.end
        if end is None:
            self._taken.append(message)
            return message
        self._outbox.send(message.reply, ACK)  # the end marker is consumed by ending here
        self._grant(self.demand.ack(1, self._loop.time()))
        self._ended = True
        if end == "error":
            self._error = message.end_error()
            raise self._error
        raise StopAsyncIteration

    async def next(self) -> Message:
        """The next message (auto-ack: the ones taken before are acked now).

        Raises:
            StopAsyncIteration: the stream's end marker, or the pull stream was closed.
            JetStreamError: the consumer could not be opened or was deleted.
        """
        if self._puller is None and not self._closed:
            await self._start()
        if self._taken and self.demand.auto_ack:
            self._settle(len(self._taken), ACK)
        while not self._waiting:
            self._check_end()
            self._wake.clear()
            await self._wake.wait()
        return self._take()

    def try_batch(self, limit: int = 1) -> Any:
        """The next message if one is in hand, else ``PENDING`` (what a demand Observable's pump
        asks first). One at a time: the pump asks again only after the downstream returned,
        so a message is acked here exactly when it was consumed, and one taken but never
        delivered (the subscription was disposed) is handed back, not acked."""
        if self._puller is None or self._closed:
            return PENDING
        if self._taken and self.demand.auto_ack:
            self._settle(len(self._taken), ACK)
        if not self._waiting:
            self._check_end()
            return PENDING
        return (self._take(),)

    def _settle(self, count: int, verdict: bytes) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= len(self._taken):
            raise LocalProtocolError(f"ack({count!r}) but {len(self._taken)} message(s) are taken and unacknowledged")
        for _ in range(count):
            self._outbox.send(self._taken.popleft().reply, verdict)
        if verdict is ACK:
            self.acked += count
        elif verdict.startswith(NAK):
            self.nacked += count
        else:
            self.termed += count
        self._grant(self.demand.ack(count, self._loop.time()))

    def ack(self, count: Verdict = 1) -> None:
        """The oldest ``count`` messages taken are done: acked in JetStream (what ``acks=`` calls).

        ``count`` may also be a verdict: :class:`Nak`, :class:`Term` or :class:`InProgress`.

        Raises:
            LocalProtocolError: more than are taken and unacknowledged.
        """
        if self._closed:
            return
        if isinstance(count, InProgress):
            self.in_progress()
        elif isinstance(count, Nak):
            self.nak(count.count, delay=count.delay)
        elif isinstance(count, Term):
            self.term(count.count)
        else:
            self._settle(count, ACK)

    def nak(self, count: int = 1, *, delay: float | None = None) -> None:
        """The oldest ``count`` messages taken failed: JetStream redelivers them (after ``delay`` s)."""
        if not self._closed:
            payload = NAK if not delay else NAK + b" " + json.dumps({"delay": int(delay * 1e9)}).encode()
            self._settle(count, payload)

    def term(self, count: int = 1) -> None:
        """The oldest ``count`` messages taken can never be processed: JetStream never redelivers them."""
        if not self._closed:
            self._settle(count, TERM)

    def in_progress(self) -> None:
        """Still working on every message taken: JetStream restarts their ``ack_wait``."""
        for message in self._taken:
            self._outbox.send(message.reply, PROGRESS)

    def request(self, n: int) -> None:
        """Grant ``n`` more (a pull request for them goes out).

        Raises:
            LocalProtocolError: ``n`` is not positive (Reactive Streams §3.9).
        """
        self._grant(self.demand.request(n, self._loop.time()))

    @property
    def held(self) -> int:
        """Messages delivered to this stream and not settled (what its window bounds)."""
        return len(self._waiting) + len(self._taken)

    async def aclose(self) -> None:
        """Stop: every message not acknowledged goes back to JetStream (redelivered), and an
        ephemeral consumer is deleted. Idempotent; the cleanup finishes even if the caller is
        cancelled meanwhile (a pipeline that ends cancels its pump while it closes)."""
        if self._closing is None:
            self._closed = True
            self.demand.end()
            self._wake.set()
            for message in (*self._taken, *self._waiting):
                self._outbox.send(message.reply, NAK)
            self.nacked += len(self._taken)
            self._taken.clear()
            self._waiting.clear()
            self._closing = self._loop.create_task(self._cleanup())
        await asyncio.shield(self._closing)

    async def _cleanup(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
        if self._puller is not None:
            await self._puller.close()
        await self._outbox.close()
        if self._target.ephemeral and self.consumer is not None and not self._nc.is_closed:
            try:
                await self._nc.jetstream().delete_consumer(self._target.stream, self.consumer)
            except Exception as exc:  # it goes by itself after its inactive_threshold
                log.debug("deleting ephemeral consumer %s failed: %s", self.consumer, exc)

    # ------------------------------------------------------------ async iteration

    def __aiter__(self) -> JetStreamPull:
        return self

    async def __anext__(self) -> Message:
        return await self.next()

    def __repr__(self) -> str:
        return (
            f"<JetStreamPull {self._target.stream}/{self.consumer} waiting={len(self._waiting)} "
            f"taken={len(self._taken)} {self.demand!r}>"
        )


class JetStreamSource(DemandObservable[Message]):
    """A JetStream consumer as a demand Observable of :class:`Message` s, and an async iterable.

    Each subscription (or ``async for``) opens one :class:`JetStreamPull`; its demand is the
    operator after it (``windowed``, ``request_n``, ``limit_rate``...) or ``window`` by default.
    :meth:`pull` opens one for explicit acknowledgement in async code.
    """

    def __init__(
        self,
        nc: Client,
        target: ConsumerTarget,
        *,
        window: int = 16,
        expires: float = 5.0,
        max_bytes: int | None = None,
    ):
        Window(window)  # checked now

        def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> JetStreamPull:
            return JetStreamPull(nc, target, policy, auto_ack, expires=expires, max_bytes=max_bytes, window=window)

        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        name = target.durable or "ephemeral"
        super().__init__(
            opener, Demand(policy=lambda: Window(window)), description=f"jetstream({target.stream}/{name})", loop=loop
        )
        self._pull_opener = opener
        self.target = target

    def pull(self, window: WindowSpec = None, *, auto_ack: bool = True) -> JetStreamPull:
        """One pull stream for ``async for`` / ``async with``, with its own window (the
        source's by default). With ``auto_ack=False`` acknowledge with ``ack()``/``nak()``/``term()``."""
        policy = self.demand.policy() if window is None else policy_for(window)
        return self._pull_opener(policy, auto_ack)


def jetstream_source(
    nc: Client,
    stream: str,
    *,
    consumer: str | None = None,
    subject: str | None = None,
    config: ConsumerConfig | None = None,
    create: bool = True,
    window: int = 16,
    expires: float = 5.0,
    max_bytes: int | None = None,
) -> JetStreamSource:
    """A JetStream stream's messages as a demand source (Observable and async iterable).

    Args:
        nc: a connected ``nats.aio.client.Client``.
        stream: the stream to read.
        consumer: a durable pull consumer to read through (shared by every subscription:
            a work queue); None for an ephemeral consumer per subscription (each its own
            cursor from the start of the stream, or as ``config.deliver_policy`` says).
        subject: the filter subject of a consumer created here.
        config: the ``ConsumerConfig`` of a consumer created here (``ack_wait``,
            ``max_deliver``...); ``max_ack_pending`` defaults to the window.
        create: create the durable consumer when it does not exist.
        window: messages in flight per subscription when no demand operator says otherwise.
        expires: seconds a pull request waits on the server before it is renewed.
        max_bytes: a byte budget per pull request (a large message waits for a smaller batch).
    """
    target = ConsumerTarget(stream, consumer, subject, config, create)
    return JetStreamSource(nc, target, window=window, expires=expires, max_bytes=max_bytes)
