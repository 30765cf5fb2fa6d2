"""What ``rxchannel serve ROOT --nats nats://HOST:PORT`` adds to a hub: routes backed by JetStream.

* ``queue/<name>`` (request-channel) — a worker's side of :class:`JetStreamQueue` ``name``
  (what :func:`rxchannel.runtime.work` speaks); every hub on the same JetStream serves the
  same queue.
* ``broadcast/<topic>`` (request-stream) — the topic's stream from the start, through a
  consumer of the requester's own (:mod:`._broadcast`), paced by its REQUEST_N.
"""

from __future__ import annotations

import logging
from typing import Any

import nats
from nats.aio.client import Client

from rxchannel.core import ApplicationError, ErrorCode, Interaction
from rxchannel.runtime import Request, Router

from ._bridge import jetstream_handler
from ._broadcast import broadcast_names
from ._queue import JetStreamQueue
from ._wire import JetStreamError

__all__ = ["JetStreamRoutes", "connect_jetstream"]

log = logging.getLogger("rxchannel.nats")


async def connect_jetstream(url: str, *, name: str = "rxchannel", connect_timeout: float = 5.0) -> Client:
    """Connect to NATS at ``url`` and check that JetStream answers.

    The connection reconnects by itself for as long as it takes (a NATS server restarting
    is a pause, not an end).

    Raises:
        JetStreamError: the server cannot be reached, or JetStream is not enabled on it.
    """

    async def error(exc: Exception) -> None:
        log.debug("NATS connection (%s): %s", url, exc)

    async def disconnected() -> None:
        log.warning("NATS connection to %s lost; reconnecting", url)

    async def reconnected() -> None:
        log.info("NATS connection to %s is back", url)

    try:
        nc = await nats.connect(
            url,
            name=name,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=2,  # the first connection: fail, do not wait forever
            reconnect_time_wait=0.5,
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
    except Exception as exc:
        raise JetStreamError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    nc.options["max_reconnect_attempts"] = -1  # once connected: reconnect for as long as it takes
    try:
        await nc.jetstream().account_info()
    except Exception as exc:
        await nc.close()
        raise JetStreamError(
            f"NATS at {url} has no JetStream ({exc or type(exc).__name__}): start nats-server with -js"
        ) from None
    return nc


class JetStreamRoutes:
    """The JetStream routes of a hub (see the module docstring); one :class:`JetStreamQueue` per
    queue name, made on first use.

    Args:
        nc: a connected NATS client (closed by :meth:`close` when ``owns_connection``).
        queue_options: passed to every :class:`JetStreamQueue` (``ack_wait``, ``max_failures``...).
    """

    def __init__(self, nc: Client, *, owns_connection: bool = False, **queue_options: Any):
        self.nc = nc
        self._owns = owns_connection
        self._options = queue_options
        self.queues: dict[str, JetStreamQueue] = {}
        self._queue_prefix = "queue/"
        self._broadcast_prefix = "broadcast/"

    def install(self, router: Router, *, queues: str = "queue/", broadcasts: str = "broadcast/") -> JetStreamRoutes:
        """Register the routes on ``router`` (prefixes ending in ``/``)."""
        self._queue_prefix, self._broadcast_prefix = queues, broadcasts
        router.add(Interaction.CHANNEL, queues, self.serve_queue, window=64)
        router.add(Interaction.STREAM, broadcasts, jetstream_handler(self.nc, self._broadcast_stream))
        return self

    def queue(self, name: str) -> JetStreamQueue:
        """The queue ``name`` on this hub (made on first use).

        Raises:
            ValueError: not a queue name.
        """
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = JetStreamQueue(self.nc, name, **self._options)
        return queue

    async def serve_queue(self, request: Request) -> None:
        """The ``queue/<name>`` channel handler."""
        name = (request.route or "")[len(self._queue_prefix) :]
        try:
            queue = self.queue(name)
        except ValueError as exc:
            raise ApplicationError(str(exc), ErrorCode.REJECTED) from None
        try:
            await queue.ensure()
        except JetStreamError as exc:
            self.queues.pop(name, None)  # the next worker tries again
            raise ApplicationError(f"the queue is not available: {exc}") from None
        await queue.handle(request)

    def _broadcast_stream(self, request: Request) -> str:
        topic = (request.route or "")[len(self._broadcast_prefix) :]
        try:
            return broadcast_names(topic)[0]
        except ValueError as exc:
            raise ApplicationError(str(exc), ErrorCode.REJECTED) from None

    async def close(self) -> None:
        """Stop the queues (their workers' jobs go back to JetStream), then the connection if ours."""
        for queue in self.queues.values():
            await queue.close()
        if self._owns and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception as exc:
                log.debug("draining the NATS connection failed: %s", exc)
                await self.nc.close()
