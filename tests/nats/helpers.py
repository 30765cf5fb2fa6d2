"""Small helpers of the JetStream tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StreamConfig


async def make_stream(
    nc: Client,
    name: str,
    subjects: list[str],
    *,
    work_queue: bool = True,
    max_msgs: int = -1,
    max_bytes: int = -1,
) -> None:
    await nc.jetstream().add_stream(
        StreamConfig(
            name=name,
            subjects=subjects,
            retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
            discard=DiscardPolicy.NEW,
            max_msgs=max_msgs,
            max_bytes=max_bytes,
        )
    )


async def make_consumer(nc: Client, stream: str, name: str, **config: Any) -> None:
    """A durable pull consumer whose max_ack_pending is far above any window under test, so that
    only rxchannel's demand bounds what it has delivered and not acknowledged."""
    config.setdefault("max_ack_pending", 100_000)
    await nc.jetstream().add_consumer(
        stream, ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, **config)
    )


async def publish_all(nc: Client, subject: str, items: list[bytes]) -> None:
    js = nc.jetstream()
    for chunk in range(0, len(items), 256):
        futures = [js.publish(subject, item) for item in items[chunk : chunk + 256]]
        await asyncio.gather(*futures)


class Sampler:
    """Samples a consumer's ``num_ack_pending`` on the server every few milliseconds."""

    def __init__(
        self, nc: Client, stream: str, consumer: str, every: float = 0.01, acked: Callable[[], int] | None = None
    ):
        self._js = nc.jetstream()
        self.stream, self.consumer, self.every = stream, consumer, every
        self.samples: list[int] = []
        #: with ``acked`` (the acks the client has sent so far): per sample, the messages the
        #: server had delivered, the acks it had applied, and the acks sent by the time its
        #: answer arrived (so at least those sent before its snapshot)
        self.views: list[tuple[int, int, int]] = []
        self._acked = acked
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            info = await self._js.consumer_info(self.stream, self.consumer)
            self.samples.append(info.num_ack_pending)
            if self._acked is not None:
                delivered, floor = info.delivered, info.ack_floor
                assert delivered is not None and floor is not None
                self.views.append((delivered.consumer_seq or 0, floor.consumer_seq or 0, self._acked()))
            await asyncio.sleep(self.every)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


async def messages_in(nc: Client, stream: str, expected: int, timeout: float = 5.0) -> int:
    """The stream's message count once it is ``expected`` (the server applies acks asynchronously),
    or what it still is after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        count = (await nc.jetstream().stream_info(stream)).state.messages
        if count == expected or loop.time() > deadline:
            return int(count)
        await asyncio.sleep(0.01)
