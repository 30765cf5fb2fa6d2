"""Publishing into JetStream with demand: at most ``window`` messages the server has not stored yet.

A JetStream publish is acknowledged by the server (a PubAck) once the message is stored.
:class:`Publisher` keeps at most ``window`` publishes without their PubAck, so what it
holds is bounded, and the demand it gives upstream is exactly the room left: a stream that
stores slowly, or a full one (``max_bytes``/``max_msgs`` with ``discard: new``, which
refuses the message), slows the source feeding it instead of filling a buffer. A refused
message is sent again (with the same ``Nats-Msg-Id``, so the server never stores it
twice) until the stream has room.

``ordered=True`` keeps the order across refusals: each message says which message must be
the stream's last before it (``Nats-Expected-Last-Msg-Id``), so when one is refused, every
one after it is refused too and all are sent again in order. That needs a stream (or at
least its subjects) written by this publisher alone, as a bridged file stream is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxchannel.core import ClosedResourceError, LocalProtocolError
from rxchannel.reactive._gate import DemandGate
from rxchannel.reactive._threads import LoopThread
from rxchannel.runtime import Payload, as_payload

from ._message import end_headers, headers_for
from ._wire import JetStreamError, unsubscribe

__all__ = ["JetStreamSink", "Published", "Publisher", "jetstream_sink"]

log = logging.getLogger("rxchannel.nats")

#: err_code of "maximum messages/bytes exceeded" (a stream with discard: new that is full)
STREAM_FULL = 10077
#: err_code of "wrong last msg ID" (an ordered publish whose predecessor is not stored yet)
WRONG_LAST = 10070


@dataclass(frozen=True, slots=True)
class Published:
    """What a publisher stored: how many messages and bytes, and the last one's stream sequence."""

    messages: int
    bytes: int
    last_seq: int | None


@dataclass(slots=True)
class _Out:
    index: int
    data: bytes
    headers: dict[str, str] | None
    sent_at: float = 0.0
    attempts: int = 0
    failed: bool = False


class PublisherOptions(TypedDict, total=False):
    """The keyword arguments of :class:`Publisher`, which a sink passes on to its publisher."""

    window: int
    ordered: bool
    timeout: float
    max_pause: float
    give_up: float | None


class Publisher:
    """Publishes to ``subject`` with at most ``window`` messages not yet stored by JetStream.

    ``await publish(item)`` waits for room; :meth:`try_publish` refuses without it (what an
    Observer does: it follows :meth:`on_room`). :meth:`finish` waits until every message
    is stored. A message the server refuses because the stream is full is sent again after a
    pause (growing to ``max_pause``) until it is stored; one it refuses for another reason,
    or a stream that stays full for ``give_up`` seconds, fails the publisher (:attr:`done`).

    Args:
        nc: a connected NATS client.
        subject: where the messages go (a subject of the stream).
        window: messages published and not yet stored, at most.
        ordered: keep the order across refusals (see the module docstring).
        timeout: seconds without a PubAck before a message is sent again (deduplicated).
        give_up: seconds a stream may stay full before the publisher fails (None: never).
    """

    def __init__(
        self,
        nc: Client,
        subject: str,
        *,
        window: int = 16,
        ordered: bool = False,
        timeout: float = 5.0,
        max_pause: float = 0.25,
        give_up: float | None = None,
    ):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self._nc = nc
        self.subject = subject
        self.window = window
        self.ordered = ordered
        self.timeout = timeout
        self.max_pause = max_pause
        self.give_up = give_up
        self._loop = asyncio.get_running_loop()
        self._id = secrets.token_hex(6)
        self._inbox = ""
        self._sub: Subscription | None = None
        self._out: dict[int, _Out] = {}  # published, not stored, by index
        self._index = 0
        self._pause = 0.005
        self._full_since: float | None = None
        self._resend: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()  # a message was stored, or the publisher failed
        self._stored_callbacks: list[Callable[[int], object]] = []
        self._writer: asyncio.Task[None] | None = None
        self._queue: list[_Out] = []
        self._wake = asyncio.Event()
        self.stored = 0
        self.stored_bytes = 0
        self.refused = 0
        self.last_seq: int | None = None
        self.done: asyncio.Future[Published] = self._loop.create_future()

    async def start(self) -> None:
        """Subscribe to the PubAcks (once, before the first publish)."""
        if self._sub is None:
            self._inbox = self._nc.new_inbox()
            self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._reply)
            self._writer = self._loop.create_task(self._write())
            self._timer = self._loop.call_later(self.timeout / 2, self._check_timeouts)

    # ------------------------------------------------------------ room

    @property
    def room(self) -> int:
        """Messages that may be published now."""
        return 0 if self.done.done() else self.window - len(self._out)

    @property
    def in_flight(self) -> int:
        """Messages published and not yet stored."""
        return len(self._out)

    def on_room(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(n)`` when ``n`` more messages may be published (the room there is now, at once)."""
        if self.room > 0 and self._sub is not None:
            callback(self.room)
        self._stored_callbacks.append(callback)

    def on_stored(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(1)`` each time JetStream stored a message."""
        self._stored_callbacks.append(callback)

    # ------------------------------------------------------------ publishing

    def try_publish(self, item: Payload | bytes | str) -> None:
        """Publish one item now.

        Raises:
            LocalProtocolError: no room (``window`` messages are not stored yet): nothing is buffered.
            ClosedResourceError / JetStreamError: the publisher is over.
        """
        if self.done.done():
            error = self.done.exception() if not self.done.cancelled() else None
            raise error or ClosedResourceError("the JetStream publisher has finished")
        if self._sub is None:
            raise LocalProtocolError("the publisher is not started: await start() (or follow on_room)")
        if len(self._out) >= self.window:
            raise LocalProtocolError(
                f"no room to publish: {self.window} message(s) are not stored by JetStream yet; follow the demand"
            )
        payload = as_payload(item)
        self._send(payload.data, headers_for(payload))

    def _send(self, data: bytes, headers: dict[str, str] | None) -> _Out:
        out = _Out(self._index, data, headers)
        self._index += 1
        self._out[out.index] = out
        self._queue.append(out)
        self._wake.set()
        return out

    async def publish(self, item: Payload | bytes | str) -> None:
        """Publish one item once there is room (waits while ``window`` are not stored)."""
        await self.start()
        while self.room <= 0:
            if self.done.done():
                break
            self._changed.clear()
            await self._changed.wait()
        self.try_publish(item)

    def _headers(self, out: _Out) -> dict[str, str]:
        headers = dict(out.headers) if out.headers else {}
        headers["Nats-Msg-Id"] = f"{self._id}-{out.index}"
        if self.ordered and out.index > 0:
            headers["Nats-Expected-Last-Msg-Id"] = f"{self._id}-{out.index - 1}"
        return headers

    async def _write(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue, []
            for out in batch:
                if out.index not in self._out:
                    continue  # stored meanwhile (a late PubAck of an earlier attempt)
                out.sent_at = self._loop.time()
                out.attempts += 1
                out.failed = False
                try:
                    await self._nc.publish(
                        self.subject, out.data, reply=f"{self._inbox}.{out.index}", headers=self._headers(out)
                    )
                except Exception as exc:  # closed, or reconnecting with a full buffer: sent again on timeout
                    log.debug("publishing to %s failed: %s", self.subject, exc)

    async def _reply(self, msg: Msg) -> None:
        try:
            index = int(msg.subject.rsplit(".", 1)[1])
            answer = json.loads(msg.data)
        except (ValueError, IndexError):
            return
        out = self._out.get(index)
        if out is None or self.done.done():
            return  # a late answer to an earlier attempt
        error = answer.get("error") if isinstance(answer, dict) else None
        if error is None:
            self._stored(out, answer.get("seq"))
            return
        err_code = int(error.get("err_code") or 0)
        code = int(error.get("code") or 0)
        if err_code == STREAM_FULL or code == 503 or (err_code == WRONG_LAST and self.ordered):
            self._refused(out, err_code == STREAM_FULL)
        else:
            self._fail(
                JetStreamError(f"JetStream refused a message for {self.subject}: {error.get('description')}", err_code)
            )

    def _stored(self, out: _Out, seq: Any) -> None:
        del self._out[out.index]
        self.stored += 1
        self.stored_bytes += len(out.data)
        if isinstance(seq, int):
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        self._full_since = None
        self._pause = 0.005
        self._changed.set()
        for callback in list(self._stored_callbacks):
            callback(1)

    def _refused(self, out: _Out, full: bool) -> None:
        out.failed = True
        if full:
            self.refused += 1
            now = self._loop.time()
            if self._full_since is None:
                self._full_since = now
            elif self.give_up is not None and now - self._full_since > self.give_up:
                self._fail(JetStreamError(f"the stream behind {self.subject} stayed full for {self.give_up:g} s"))
                return
        self._schedule_resend()

    def _schedule_resend(self) -> None:
        if self._resend is None:
            self._resend = self._loop.call_later(self._pause, self._resend_failed)
            self._pause = min(self.max_pause, self._pause * 2)

    def _resend_failed(self) -> None:
        self._resend = None
        if self.done.done():
            return
        pending = sorted(self._out.values(), key=lambda o: o.index)
        if self.ordered:
            # every message after a refused one was (or will be) refused too: once none is
            # waiting for an answer, send them all again, in order
            if any(not o.failed for o in pending):
                self._schedule_resend()
                return
            again = pending
        else:
            again = [o for o in pending if o.failed]
        for out in again:
            out.failed = False
            out.sent_at = self._loop.time()
        self._queue.extend(again)
        self._wake.set()

    def _check_timeouts(self) -> None:
        self._timer = None
        if self.done.done():
            return
        now = self._loop.time()
        late = [o for o in self._out.values() if not o.failed and o.sent_at and now - o.sent_at > self.timeout]
        for out in late:
            out.failed = True
        if late:
            log.info(
                "%d publish(es) to %s had no answer within %g s; sending them again",
                len(late),
                self.subject,
                self.timeout,
            )
            self._schedule_resend()
        self._timer = self._loop.call_later(self.timeout / 2, self._check_timeouts)

    # ------------------------------------------------------------ ending

    async def flush(self) -> None:
        """Wait until every message published so far is stored.

        Raises:
            JetStreamError: the publisher failed meanwhile.
        """
        while self._out and not self.done.done():
            self._changed.clear()
            await self._changed.wait()
        if self.done.done() and not self.done.cancelled():
            error = self.done.exception()
            if error is not None:
                raise error

    async def finish(self, *, end_marker: bool = False) -> Published:
        """Wait until everything is stored (and, with ``end_marker``, publish the message that
        says the stream completed); then stop. Returns what was stored."""
        await self.start()
        await self.flush()
        if end_marker:
            self._send(b"", end_headers(None))
            await self.flush()
        result = Published(self.stored - (1 if end_marker else 0), self.stored_bytes, self.last_seq)
        if not self.done.done():
            self.done.set_result(result)
        await self._stop()
        return result

    async def fail(self, error: BaseException, *, end_marker: bool = False) -> None:
        """Stop because the source failed: with ``end_marker``, once what was published is
        stored, publish the message that says so (a reader of the stream ends with the error)."""
        if end_marker and not self.done.done() and self._sub is not None:
            try:
                await self.flush()
                self._send(b"", end_headers(error))
                await self.flush()
            except Exception as exc:
                log.info("the end marker of %s could not be stored: %s", self.subject, exc)
        self._fail(error)
        await self._stop()

    def _fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)
            self.done.exception()  # retrieved: awaiting it is optional
        self._changed.set()

    async def _stop(self) -> None:
        for timer in (self._timer, self._resend):
            if timer is not None:
                timer.cancel()
        self._timer = self._resend = None
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        sub, self._sub = self._sub, None
        await unsubscribe(self._nc, sub, "the PubAck inbox")

    async def aclose(self) -> None:
        """Stop now; messages not stored yet may or may not be (a partial stream is not a whole one)."""
        self._fail(ClosedResourceError("the JetStream publisher was closed before it finished"))
        await self._stop()


class _SinkDemand(Observable[int]):
    """The sink's ``demand``: when the sink is over, so is the pipeline it drives."""

    ends_pipeline = True


class JetStreamSink(abc.ObserverBase[Any]):
    """An Observer whose items are published to JetStream, with ``demand`` like a remote sink::

        sink = jetstream_sink(nc, "files.big", window=8)
        reactive.file_source("big.bin").pipe(request_n(sink.demand)).subscribe(sink)
        published = await sink.done

    ``demand`` emits the room the publisher has (``window`` at first, then one per message
    stored), so the source is read only as JetStream stores. ``on_next`` past the demand is
    an error (:class:`~rxchannel.LocalProtocolError`), never a buffer. ``on_completed`` waits
    until everything is stored; ``done`` then resolves to :class:`Published`.

    Args:
        end_marker: publish a last message with the ``Rxc-End`` header on completion (or on
            error, with the error): a :func:`~rxchannel.nats.jetstream_source` reading the
            stream then completes (or fails) there.
        (the others: see :class:`Publisher`)
    """

    def __init__(self, nc: Client, subject: str, *, end_marker: bool = False, **options: Unpack[PublisherOptions]):
        self.publisher = Publisher(nc, subject, **options)
        self.end_marker = end_marker
        self._owner = LoopThread()
        self.demand: Observable[int] = _SinkDemand(self._subscribe_demand)
        self.done = self.publisher.done
        self._ending: asyncio.Task[Any] | None = None
        self._started = self._owner.loop.create_task(self.publisher.start())

    def _subscribe_demand(
        self, observer: abc.ObserverBase[int], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        gate = DemandGate(observer)

        def start(_: Any = None) -> None:
            if self._started.cancelled() or self._started.exception() is not None:
                return
            self.publisher.on_room(gate.grant)

        if self._started.done():
            start()
        else:
            self._started.add_done_callback(start)
        self.done.add_done_callback(gate.end)
        return Disposable(gate.close)

    def on_next(self, value: Any) -> None:
        """Publish one item (from another thread: on the loop, in order).

        Raises:
            LocalProtocolError: past the demand (the sink fails too).
        """
        if not self._owner.here:
            self._owner.call(self._publish_or_fail, value)
            return
        try:
            self.publisher.try_publish(value)
        except LocalProtocolError as exc:
            self._end(exc)
            raise

    def _publish_or_fail(self, value: Any) -> None:
        try:
            self.publisher.try_publish(value)
        except LocalProtocolError as exc:
            self._end(exc)
        except Exception:
            pass  # over already: the outcome is in done

    def on_error(self, error: Exception) -> None:
        self._owner.call(self._end, error)

    def on_completed(self) -> None:
        self._owner.call(self._end, None)

    def _end(self, error: BaseException | None) -> None:
        if self._ending is not None:
            return

        async def end() -> None:
            await self._started
            if error is None:
                try:
                    await self.publisher.finish(end_marker=self.end_marker)
                except Exception as exc:
                    log.debug("the JetStream sink failed: %s", exc)
            else:
                await self.publisher.fail(error, end_marker=self.end_marker)

        self._ending = self._owner.loop.create_task(end())

    def dispose(self) -> None:
        """Stop publishing (``done`` fails: a partial stream is not a whole one)."""
        self._owner.call(self._end, ClosedResourceError("the JetStream sink was disposed before completing"))


def jetstream_sink(
    nc: Client, subject: str, *, end_marker: bool = False, **options: Unpack[PublisherOptions]
) -> JetStreamSink:
    """An Observer publishing to ``subject``, at most ``window`` messages not stored (see :class:`JetStreamSink`)."""
    return JetStreamSink(nc, subject, end_marker=end_marker, **options)
