"""The two JetStream conversations everything here is made of, at the NATS protocol level.

* :class:`Puller` — pull requests on one consumer (``$JS.API.CONSUMER.MSG.NEXT``), never
  asking for more than the demand it was given: ``want(n)`` is ``request(n)``, and the
  messages that arrive are exactly what was asked for.
* :class:`Outbox` — NATS publishes (acks, naks, pull requests) from synchronous code, in
  order, written by one task.

Why not nats-py's ``PullSubscription.fetch``: a fetch that times out on the client can
leave its request alive on the server, and the messages it later brings are handed to the
next fetch, so the messages in hand can exceed what was asked for. Here one request at a
time is open on an inbox, and every request ends in a way the server says: its batch
delivered in full, or a status (408 Request Timeout, 409 ...) whose
``Nats-Pending-Messages`` header says how many it did not deliver. Those go back to the
demand not yet asked for. A request the server never ends (the connection broke) is given
up after its expiry plus a grace period, together with its inbox: anything it still
brings goes nowhere and is redelivered by the server after the consumer's ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from rxchannel.core import RxChannelError

__all__ = [
    "ACK",
    "NAK",
    "PROGRESS",
    "TERM",
    "JetStreamError",
    "Outbox",
    "Puller",
    "ack_info",
    "check_name",
    "unsubscribe",
]

log = logging.getLogger("rxchannel.nats")

ACK = b"+ACK"
NAK = b"-NAK"
TERM = b"+TERM"
PROGRESS = b"+WPI"

#: statuses that end a pull request (the heartbeat, 100, does not)
_ENDS = frozenset({"404", "408", "409"})
#: what JetStream takes in a stream's name and a subject's token alike
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class JetStreamError(RxChannelError):
    """JetStream refused or failed a request (``err_code`` is the server's, 0 when it gave none)."""

    def __init__(self, message: str, err_code: int = 0):
        super().__init__(message)
        self.err_code = err_code


async def unsubscribe(nc: Client, sub: Subscription | None, what: str) -> None:
    """Unsubscribe ``sub`` (``what`` names it in the log) while the connection is open; a
    failure is only logged: the server forgets the subscription with the connection anyway."""
    if sub is not None and not nc.is_closed:
        try:
            await sub.unsubscribe()
        except Exception as exc:
            log.debug("unsubscribing %s failed: %s", what, exc)


def check_name(name: str, what: str) -> None:
    """Refuse a ``name`` (``what`` says of what) that cannot name a stream and a subject.

    Raises:
        ValueError: a name JetStream cannot take (letters, digits, ``_`` and ``-``, 1 to 64).
    """
    if not _NAME.match(name):
        raise ValueError(f"{what} is 1-64 letters, digits, '_' or '-', got {name!r}")


def ack_info(reply: str) -> tuple[int, int]:
    """(stream sequence, deliveries) from a JetStream message's ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (9 tokens) or,
    with a domain and an account hash, 12 tokens (ADR-15 of nats-architecture-and-design).

    Raises:
        JetStreamError: not a JetStream message (no ack subject).
    """
    tokens = reply.split(".")
    if len(tokens) == 9 and tokens[0] == "$JS":
        return int(tokens[5]), int(tokens[4])
    if len(tokens) >= 11 and tokens[0] == "$JS":
        return int(tokens[7]), int(tokens[6])
    raise JetStreamError(f"not a JetStream message (its reply subject is {reply!r})")


class Outbox:
    """NATS publishes queued from synchronous code and written in order by one task.

    An ack is a NATS publish, and nats-py's publish is a coroutine; the demand verbs that
    ack (``ack(n)``, the next pull) are synchronous, as everywhere in rxchannel. A publish
    that fails (the connection closed) is logged and dropped: an ack that never reaches the
    server means a redelivery, never a loss.
    """

    def __init__(self, nc: Client):
        self._nc = nc
        self._items: deque[tuple[str, bytes, str]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def send(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
        """Queue one publish (written soon, after those queued before it)."""
        self._items.append((subject, payload, reply))
        self._idle.clear()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        items = self._items
        while True:
            if not items:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            subject, payload, reply = items.popleft()
            try:
                await self._nc.publish(subject, payload, reply=reply)
                self.sent += 1
            except Exception as exc:  # closed or reconnecting with a full buffer: redelivery covers it
                log.debug("a JetStream publish to %s was dropped: %s", subject, exc)

    async def drain(self) -> None:
        """Wait until everything queued was handed to the connection, then flush it."""
        await self._idle.wait()
        if not self._nc.is_closed:
            try:
                await self._nc.flush(timeout=5)
            except Exception as exc:
                log.debug("flushing the NATS connection failed: %s", exc)

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Puller:
    """Pull requests on one consumer that ask the server for exactly the demand given.

    ``want(n)`` adds demand; the puller keeps one request open on its inbox for the demand
    not yet asked for, and each message that arrives goes to ``on_message``. The sum of
    the messages delivered never exceeds the sum of ``want``: a request is sent only for
    demand that no open request covers, and a request's undelivered part (the server's
    ``Nats-Pending-Messages``) comes back as demand to ask again.

    Args:
        nc: the NATS connection.
        stream, consumer: the pull consumer.
        on_message: called with each message, in order.
        on_error: called once when the consumer cannot be pulled any more (deleted, push-based).
        outbox: where the requests go (shared with the acks, so an ack is written before
            the request that follows it, and the server has room for it).
        expires: seconds a request waits on the server for messages (then it ends with 408
            and is sent again, for as long as there is demand).
        max_bytes: a byte budget per request (the server ends the batch there), or None.
        api_prefix: the JetStream API prefix (``$JS.API``, or a domain's).
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        on_message: Callable[[Msg], None],
        on_error: Callable[[Exception], None],
        outbox: Outbox,
        *,
        expires: float = 5.0,
        max_bytes: int | None = None,
        api_prefix: str = "$JS.API",
    ):
        if not expires > 0:
            raise ValueError(f"expires must be a positive number of seconds, got {expires!r}")
        self._nc = nc
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._on_message = on_message
        self._on_error = on_error
        self._outbox = outbox
        self.expires = expires
        self.max_bytes = max_bytes
        #: demand given and not yet asked of the server
        self.wanted = 0
        #: what the open request may still bring (0: none open)
        self.asked = 0
        #: the server's cap on a request's batch, once it told us (409 Exceeded MaxRequestBatch)
        self.max_batch: int | None = None
        self.requests = 0
        self.delivered = 0
        self._open = False
        self._inbox: str | None = None
        self._sub: Subscription | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = 0.05
        self._closed = False
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        """Subscribe the inbox and ask for the demand given so far."""
        await self._subscribe()
        self._pull()

    async def _subscribe(self) -> None:
        inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(inbox, cb=self._receive)
        self._inbox = inbox

    def want(self, n: int) -> None:
        """Add ``n`` to the demand (a request goes out for it if none is open)."""
        if n > 0:
            self.wanted += n
            self._pull()

    def _pull(self) -> None:
        if self._open or self.wanted <= 0 or self._inbox is None or self._closed or self._retry is not None:
            return
        batch = self.wanted if self.max_batch is None else min(self.wanted, self.max_batch)
        self.wanted -= batch
        self.asked = batch
        self._open = True
        self.requests += 1
        body: dict[str, Any] = {"batch": batch, "expires": int(self.expires * 1e9)}
        if self.max_bytes is not None:
            body["max_bytes"] = self.max_bytes
        self._outbox.send(self._next, json.dumps(body).encode(), self._inbox)
        self._watchdog = self._loop.call_later(self.expires + max(1.0, self.expires / 2), self._lost)

    def _ended(self, undelivered: int) -> None:
        """The open request is over; ``undelivered`` of it goes back to the demand."""
        self.wanted += undelivered
        self.asked = 0
        self._open = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def _receive(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if not status:
            if self._closed:
                self._outbox.send(msg.reply, NAK)  # arrived after close: never handed on
                return
            if not self._open:
                # never asked for (cannot happen with one request per inbox): back to the server at once
                self._outbox.send(msg.reply, NAK)
                log.warning("a JetStream message arrived that no pull request asked for; it was handed back")
                return
            self.asked -= 1
            self.delivered += 1
            self._backoff = 0.05
            if self.asked == 0:
                self._ended(0)
            self._on_message(msg)
            self._pull()
            return
        if status not in _ENDS or not self._open:
            return  # 100: an idle heartbeat or flow control; or the end of a request already given up
        assert headers is not None
        pending = headers.get("Nats-Pending-Messages")
        undelivered = min(int(pending), self.asked) if pending is not None else self.asked
        self._ended(undelivered)
        description = str(headers.get("Description", ""))
        if status == "408" or (status == "409" and description.startswith("Message Size Exceeds")):
            self._pull()  # expired (the long poll goes on) or the byte budget was reached
            return
        if status == "409" and description.startswith("Exceeded MaxRequestBatch"):
            limit = description.rsplit(" ", 1)[-1]
            if limit.isdigit() and int(limit) > 0:
                self.max_batch = int(limit)
                self._pull()
                return
        if status == "409" and ("Deleted" in description or "push based" in description):
            self._closed = True
            self._on_error(JetStreamError(f"the consumer cannot be pulled: {description}"))
            return
        # 404 (no messages: not asked for, but harmless), 409 Exceeded MaxWaiting, Leadership Change, ...
        log.debug("a pull request ended with %s %s; asking again", status, description)
        self._retry_later()

    def _retry_later(self) -> None:
        def retry() -> None:
            self._retry = None
            self._pull()

        self._retry = self._loop.call_later(self._backoff, retry)
        self._backoff = min(1.0, self._backoff * 2)

    def _lost(self) -> None:
        """The open request outlived its expiry: the server lost it (or the connection broke).

        Its demand goes back, and its inbox is replaced, so that whatever it might still
        bring reaches nobody (the server redelivers it after ``ack_wait``) and the messages
        in hand never exceed the demand.
        """
        self._watchdog = None
        if not self._open or self._closed:
            return
        log.info("a pull request on %s was not answered within its expiry; asking again on a new inbox", self._next)
        self._ended(self.asked)
        old, self._sub, self._inbox = self._sub, None, None
        self._loop.create_task(self._replace(old))

    async def _replace(self, old: Subscription | None) -> None:
        await unsubscribe(self._nc, old, "a lost pull inbox")
        while not self._closed:
            try:
                await self._subscribe()
                break
            except Exception as exc:  # reconnecting: try again
                log.debug("subscribing a pull inbox failed: %s", exc)
                await asyncio.sleep(self._backoff)
                self._backoff = min(1.0, self._backoff * 2)
        self._pull()

    async def close(self) -> None:
        """Stop pulling. An open request's messages still on their way are redelivered by the server."""
        self._closed = True
        for timer in (self._watchdog, self._retry):
            if timer is not None:
                timer.cancel()
        self._watchdog = self._retry = None
        sub, self._sub = self._sub, None
        await unsubscribe(self._nc, sub, "a pull inbox")

    def __repr__(self) -> str:
        return f"<Puller {self._next} wanted={self.wanted} asked={self.asked} delivered={self.delivered}>"
