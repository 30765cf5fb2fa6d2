"""Benchmark processes for DataChannel transfers (one role per process, so RSS is per side).

    python -m benchmarks._dc_peers raw-send FILE CHUNK          # prints its URL, serves one transfer
    python -m benchmarks._dc_peers raw-recv URL OUT [--rate B]  # prints a JSON summary
    python -m benchmarks._dc_peers rx-recv URL NAME OUT CHUNK [--rate B] [--window W]
    python -m benchmarks._dc_peers rx-go URL NAME OUT [--window W]   # connects, waits for a line, fetches
    python -m benchmarks._dc_peers stack-send FILE CHUNK --stack S --host H   # the raw pattern on any stack
    python -m benchmarks._dc_peers stack-recv URL SIZE --stack S --host H

The raw pair (raw-send, raw-recv) is aiortc's DataChannel file-transfer pattern: the sender
sends while ``bufferedAmount`` is under ``bufferedAmountLowThreshold`` and resumes on
``bufferedamountlow``; the receiver writes whatever arrives. The receiver has no way to
slow the sender down, so a slow sink (``--rate``) makes it buffer. The rxchannel side is
the hub (``rxchannel serve``) and a worker using the same sink, pacing with credits.

stack-send uses rxchannel's own marks instead (fill to 1 MiB of ``bufferedAmount``, resume at
256 KiB), reading ``bufferedAmount`` before each message where rxchannel's transport counts
what it wrote and asks only near the mark; stack-recv hashes what arrives and writes nothing.

Every peer connection uses no ICE servers and loopback-only host candidates.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rxchannel.cli.loops import add_loop_option
from rxchannel.cli.loops import run as run_on
from rxchannel.cli.units import peak_rss_mb
from rxchannel.webrtc.aiortc_stack import rtc_peer_connection as new_peer_connection
from rxchannel.webrtc.gathering import ice_host_addresses

LOW_WATER = 256 * 1024  # the same threshold rxchannel's transport uses (high-water 1 MiB / 4)
HIGH_WATER = 1024 * 1024  # the same high-water mark (stack-send; raw-send keeps aiortc's own example pattern)


class Sink:
    """Writes to a file, optionally no faster than ``rate`` bytes/s (a slow disk or consumer)."""

    def __init__(self, path: str, rate: float | None):
        self.handle = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.rate = rate
        self.written = 0
        self.start = time.perf_counter()
        self.digest = hashlib.sha256()

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.handle.write, data)
        self.digest.update(data)
        self.written += len(data)
        if self.rate:
            ahead = self.written / self.rate - (time.perf_counter() - self.start)
            if ahead > 0:
                await asyncio.sleep(ahead)

    def close(self) -> None:
        self.handle.close()


async def _take_offers(
    offer: Callable[[web.Request], Awaitable[web.Response]], host: str, done: asyncio.Event, pcs: list[Any]
) -> None:
    """A sender's signaling: take offers at http://HOST:PORT/offer (the URL printed first) until
    ``done``; then print the sender's peak RSS and CPU seconds as a JSON line and close ``pcs``."""
    app = web.Application()
    app.router.add_post("/offer", offer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    print(f"http://{host}:{runner.addresses[0][1]}", flush=True)
    cpu = time.process_time()
    await done.wait()
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "cpu_s": time.process_time() - cpu}), flush=True)
    for pc in pcs:
        await pc.close()
    await runner.cleanup()


async def raw_send(path: str, chunk: int) -> None:
    done = asyncio.Event()

    async def offer(request: web.Request) -> web.Response:
        pc = new_peer_connection()
        pcs.append(pc)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("closed", "failed"):
                done.set()

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            fp = open(path, "rb")  # noqa: SIM115 - closed when the last chunk is read

            def send_data() -> None:
                while channel.bufferedAmount <= channel.bufferedAmountLowThreshold:
                    data = fp.read(chunk)
                    channel.send(data)  # an empty message marks the end
                    if not data:
                        fp.close()
                        channel.remove_listener("bufferedamountlow", send_data)
                        break

            channel.bufferedAmountLowThreshold = LOW_WATER
            channel.on("bufferedamountlow", send_data)
            channel.on("message", lambda _m: done.set())  # the receiver says "done"
            channel.on("close", done.set)  # or closes (its "done" may not make it out first)
            send_data()

        body = await request.json()
        await pc.setRemoteDescription(_description(body))
        with ice_host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    pcs: list[Any] = []
    await _take_offers(offer, "127.0.0.1", done, pcs)


def _description(body: dict[str, str]) -> Any:
    from aiortc import RTCSessionDescription

    return RTCSessionDescription(sdp=body["sdp"], type=body["type"])


async def raw_recv(url: str, out: str, rate: float | None) -> None:
    import aiohttp

    pc = new_peer_connection()
    channel = pc.createDataChannel("filexfer")
    sink = Sink(out, rate)
    queue: deque[bytes] = deque()
    arrived = asyncio.Event()
    peak_queued = queued = 0

    @channel.on("message")
    def on_message(message: bytes) -> None:
        nonlocal queued, peak_queued
        queue.append(message)
        queued += len(message)
        peak_queued = max(peak_queued, queued)
        arrived.set()

    with ice_host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/offer", json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        ) as response,
    ):
        await pc.setRemoteDescription(_description(await response.json()))
    start, cpu = time.perf_counter(), time.process_time()
    while True:
        while not queue:
            arrived.clear()
            await arrived.wait()
        data = queue.popleft()
        queued -= len(data)
        if not data:
            break
        await sink.write(data)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    channel.send("done")
    await asyncio.sleep(0.1)
    sink.close()
    await pc.close()
    print(
        json.dumps(
            {
                "bytes": sink.written,
                "seconds": seconds,
                "cpu_s": cpu,
                "sha256": sink.digest.hexdigest(),
                "peak_rss_mb": peak_rss_mb(),
                "peak_queued_mb": peak_queued / 1e6,
            }
        ),
        flush=True,
    )


async def stack_send(path: str, chunk: int, stack: str, host: str) -> None:
    """rxchannel's drain marks on ``stack`` through its stack interface, with no RSocket (fill to
    HIGH_WATER, resume on ``bufferedamountlow`` at LOW_WATER): what a stack's DataChannels do by
    themselves, for comparing rxchannel against on that stack."""
    from rxchannel.webrtc.stack import get_stack

    done = asyncio.Event()
    pcs: list[Any] = []

    async def offer(request: web.Request) -> web.Response:
        pc = get_stack(stack).new_peer_connection([])
        pcs.append(pc)

        def on_state() -> None:
            if pc.connection_state in ("closed", "failed"):
                done.set()

        def on_channel(channel: Any) -> None:
            fp = open(path, "rb")  # noqa: SIM115 - closed when the last chunk is read

            def send_data() -> None:
                # rxchannel's marks: fill up to HIGH_WATER, wait for bufferedamountlow (LOW_WATER)
                while channel.bufferedAmount < HIGH_WATER:
                    data = fp.read(chunk)
                    if not data:
                        fp.close()
                        channel.remove_listener("bufferedamountlow", send_data)
                        break
                    channel.send(data)

            channel.bufferedAmountLowThreshold = LOW_WATER
            channel.on("bufferedamountlow", send_data)
            channel.on("message", lambda _m: done.set())  # the receiver says "done"
            channel.on("close", done.set)
            send_data()

        pc.on_state(on_state)
        pc.on_channel(on_channel)
        body = await request.json()
        await pc.answer(body["sdp"], [host], None)
        return web.json_response({"sdp": pc.local_sdp, "type": "answer"})

    await _take_offers(offer, host, done, pcs)


async def stack_recv(url: str, size: int, stack: str, host: str) -> None:
    """The receiving side of :func:`stack_send`: counts ``size`` bytes, hashes them, says done."""
    import aiohttp

    from rxchannel.webrtc.stack import get_stack

    pc = get_stack(stack).new_peer_connection([])
    channel = pc.create_channel("filexfer")
    got, finished = 0, asyncio.Event()
    digest = hashlib.sha256()

    def on_message(message: bytes) -> None:
        nonlocal got
        digest.update(message)
        got += len(message)
        if got >= size:
            finished.set()

    channel.on("message", on_message)
    await pc.offer([host], None)
    async with aiohttp.ClientSession() as session, session.post(url + "/offer", json={"sdp": pc.local_sdp}) as answer:
        await pc.accept((await answer.json())["sdp"])
    start, cpu = time.perf_counter(), time.process_time()
    await finished.wait()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    channel.send(b"done")
    await asyncio.sleep(0.1)
    await pc.close()
    summary = {
        "bytes": got,
        "seconds": seconds,
        "cpu_s": cpu,
        "sha256": digest.hexdigest(),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(summary), flush=True)


def _over_webrtc(stack: str | None) -> Any:
    """Dial options that take WebRTC (not the hub's direct path) on ``stack``."""
    from rxchannel.transports import TransportOptions
    from rxchannel.webrtc.options import WebRtcOptions

    return TransportOptions(webrtc=WebRtcOptions(via="webrtc", stack=stack))


async def rx_recv(url: str, name: str, out: str, rate: float | None, window: int, stack: str | None = None) -> None:
    from rxchannel.files import FileSink
    from rxchannel.runtime import connect

    peer = await connect(url, options=_over_webrtc(stack))
    sink = FileSink(out, resume=False)
    await sink.open()
    pacer = Sink("/dev/null", rate) if rate else None  # FileSink already writes and hashes each chunk
    start, cpu = time.perf_counter(), time.process_time()
    stream = peer.request_stream(f"files/{name}", window=window, auto_ack=False)
    async for item in stream:
        await sink.write(item)
        if pacer is not None:
            await pacer.write(item.data)  # the same pacing as the raw receiver's sink
        stream.ack()
    digest = await sink.finish()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    await peer.close()
    print(
        json.dumps(
            {"bytes": sink.written, "seconds": seconds, "cpu_s": cpu, "sha256": digest, "peak_rss_mb": peak_rss_mb()}
        ),
        flush=True,
    )


async def rx_go(url: str, name: str, out: str, window: int, stack: str | None = None) -> None:
    """A hub worker that connects, says ``ready``, waits for a line on stdin, then fetches
    (``fetch_file``, as ``rxchannel fetch`` does) and prints when it started and ended."""
    from rxchannel.files import fetch_file
    from rxchannel.runtime import connect

    peer = await connect(url, options=_over_webrtc(stack))
    await peer.request_response("files")  # the connection is up and SETUP is through
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start, cpu = time.time(), time.process_time()
    try:
        result = await fetch_file(peer, name, out, window=window, resume=False, overwrite=True)
    finally:
        await peer.close()
    end = time.time()
    summary = {"bytes": result.size, "start": start, "end": end, "cpu_s": time.process_time() - cpu}
    print(json.dumps({**summary, "sha256": result.sha256}), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["raw-send", "raw-recv", "rx-recv", "rx-go", "stack-send", "stack-recv"])
    parser.add_argument("args", nargs="+")
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument(
        "--stack", default=None, help="the WebRTC stack of rx-recv / rx-go (default: native if installed)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address stack-send / stack-recv gather on")
    add_loop_option(parser)
    ns = parser.parse_args(argv)
    if ns.role == "raw-send":
        run_on(raw_send(ns.args[0], int(ns.args[1])), ns.loop)
    elif ns.role == "raw-recv":
        run_on(raw_recv(ns.args[0], ns.args[1], ns.rate), ns.loop)
    elif ns.role == "stack-send":
        run_on(stack_send(ns.args[0], int(ns.args[1]), ns.stack or "native", ns.host), ns.loop)
    elif ns.role == "stack-recv":
        run_on(stack_recv(ns.args[0], int(ns.args[1]), ns.stack or "native", ns.host), ns.loop)
    elif ns.role == "rx-go":
        run_on(rx_go(ns.args[0], ns.args[1], ns.args[2], ns.window, ns.stack), ns.loop)
    else:
        run_on(rx_recv(ns.args[0], ns.args[1], ns.args[2], ns.rate, ns.window, ns.stack), ns.loop)


if __name__ == "__main__":
    main(sys.argv[1:])
