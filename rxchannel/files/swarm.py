"""One file from several sources at once: disjoint chunk ranges, each chunk verified as it arrives.

The first source is the authority: its manifest (``manifest/<path>``) says what the file
is. Every other source's manifest must be the same, or that source is not used. Each
source then pulls ranges of the chunks still missing (``files/<path>`` with
``{"offset", "end"}``), with its own credit window, acknowledging an item only once its
chunk is verified and written: a source is fed as fast as it serves, no faster.

Balancing by demand: at first each source takes an equal share of the missing chunks.
A source that runs out takes from what dropped sources left, else it takes the tail of
the range whose owner would finish last, split so that both should finish together at
the rates they have kept up so far (bytes received over the time they spent pulling). A
source twice as fast thus ends up serving about twice the chunks, without any setting.

A source is dropped (and what it had not delivered goes to the others) when it sends a
chunk that does not match the manifest (:class:`~.chunks.ChunkMismatchError`: the chunk
is never written), when it sends nothing for ``stall_timeout`` seconds while it has
credit, when its stream fails or its connection is lost. With one source, any of these
fails the fetch at once; with several, only when no source is left.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rxchannel.core import MetadataError, RxChannelError
from rxchannel.runtime import Peer, RemoteStream

from ._common import IntegrityError, item_info
from .chunks import ChunkMismatchError, ChunkSink
from .manifest import Manifest
from .protocol import FileRequest

__all__ = ["DEFAULT_STALL_TIMEOUT", "SourceReport", "fetch_manifest", "fetch_verified"]

#: seconds without a byte from a source that has credit before it is dropped
DEFAULT_STALL_TIMEOUT = 15.0
#: a steal leaves the victim what it will receive within this many seconds (the rest is taken)
STEAL_HORIZON = 0.25

Progress = Callable[[int, int | None, int], None]


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one source did in a fetch: the bytes and chunks it delivered (verified), and why it
    was dropped (None: it was used to the end, or had nothing left to do)."""

    url: str
    bytes: int
    chunks: int
    dropped: str | None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "bytes": self.bytes, "chunks": self.chunks, "dropped": self.dropped}


async def fetch_manifest(peer: Peer, remote_path: str) -> Manifest:
    """The hub's manifest of ``remote_path`` (route ``manifest/<path>``), checked for consistency.

    Raises:
        RemoteError: the hub refused (no such file; a hub without manifests answers that
            it has no handler for the route).
        IntegrityError: the reply is not a consistent manifest.
    """
    reply = await peer.request_response(f"manifest/{remote_path}")
    return Manifest.decode(reply.data)


class _DroppedError(Exception):
    def __init__(self, reason: str, error: BaseException | None = None):
        super().__init__(reason)
        self.reason, self.error = reason, error


@dataclass(eq=False)
class _Range:
    next: int  # the next chunk to verify
    end: int  # exclusive; lowered when another source takes the tail


@dataclass(eq=False)
class _Source:
    name: str
    peer: Peer | None
    delivered: int = 0  # verified bytes
    chunks: int = 0
    received: int = 0  # bytes received, verified or not (for the rate)
    dropped: str | None = None
    error: BaseException | None = None
    range: _Range | None = None
    queue: list[_Range] = field(default_factory=list)  # its share, not started yet
    stream: RemoteStream | None = None
    busy_seconds: float = 0.0
    pull_started: float | None = None
    last_item: float = 0.0
    item_size: int = 0
    stalled: str | None = None
    pull: asyncio.Task[None] | None = field(default=None, repr=False)

    def rate(self, now: float) -> float | None:
        """Bytes per second while pulling, so far (None before any byte)."""
        busy = self.busy_seconds + (now - self.pull_started if self.pull_started is not None else 0.0)
        return self.received / busy if self.received and busy > 0 else None

    def report(self) -> SourceReport:
        return SourceReport(self.name, self.delivered, self.chunks, self.dropped)


class _Swarm:
    def __init__(
        self,
        sink: ChunkSink,
        sources: list[_Source],
        remote_path: str,
        *,
        window: Any,
        progress: Progress | None,
        feeding: Callable[[int], None] | None,
        stall_timeout: float,
    ):
        self.sink, self.manifest = sink, sink.manifest
        self.sources = sources
        self.remote_path = remote_path
        self.window = window
        self.progress = progress
        self.feeding = feeding
        self.stall_timeout = stall_timeout
        self.pool: list[_Range] = []
        self.changed = asyncio.Condition()
        self.loop = asyncio.get_running_loop()
        self.mismatch: ChunkMismatchError | None = None

    # ------------------------------------------------------------------ work

    def _usable(self) -> list[_Source]:
        return [s for s in self.sources if s.dropped is None and s.peer is not None]

    def _take(self, src: _Source) -> _Range | None:
        """Work for ``src``: its own share, the pool (a fair share of it), another's share not started,
        else the tail of the range whose owner would finish last."""
        if src.queue:
            return src.queue.pop(0)
        if self.pool:
            total = sum(r.end - r.next for r in self.pool)
            share = max(1, math.ceil(total / max(1, len(self._usable()))))
            run = self.pool[0]
            if run.end - run.next <= share:
                self.pool.pop(0)
                return run
            piece = _Range(run.next, run.next + share)
            run.next += share
            return piece
        queued = [s for s in self._usable() if s.queue]
        if queued:
            victim = max(queued, key=lambda s: sum(r.end - r.next for r in s.queue))
            run = victim.queue[-1]
            total = sum(r.end - r.next for r in victim.queue)
            if run.end - run.next > total // 2 and total >= 2:
                cut = run.end - total // 2
                piece = _Range(cut, run.end)
                run.end = cut
                return piece
            return victim.queue.pop()
        return self._steal(src)

    def _steal(self, thief: _Source) -> _Range | None:
        now = self.loop.time()
        best: tuple[float, _Source, int] | None = None
        for victim in self._usable():
            rng = victim.range
            if victim is thief or rng is None:
                continue
            margin = self._in_flight_chunks(victim)
            left = rng.end - rng.next - margin  # what it has not asked for yet
            if left < 2:
                continue
            rate = victim.rate(now) or 1.0
            finish = left * self.manifest.chunk_size / rate
            if best is None or finish > best[0]:
                best = (finish, victim, left)
        if best is None:
            return None
        _, victim, left = best
        assert victim.range is not None
        v = victim.rate(now)
        t = thief.rate(now)
        if v is None or t is None:
            v = t = 1.0
        taken = int(left * t / (t + v))
        if taken < 1:
            return None
        cut = victim.range.end - taken
        piece = _Range(cut, victim.range.end)
        victim.range.end = cut
        return piece

    def _in_flight_chunks(self, src: _Source) -> int:
        """Chunks the victim has asked for and will receive soon: a steal leaves them to it.

        At most what it receives in :data:`STEAL_HORIZON` seconds at its rate: past that, a
        slow source's window (as many chunks in flight on a slow link as on a fast one) is
        better fetched again by a faster source than waited for (its stream is cancelled
        when it reaches the new end of its range; what was in flight beyond is dropped)."""
        stream = src.stream
        if stream is None:
            return 0
        chunk = self.manifest.chunk_size
        flying = math.ceil(stream.in_flight * (src.item_size or chunk) / chunk) + 1
        rate = src.rate(self.loop.time())
        if rate is None:
            return flying
        return min(flying, math.ceil(rate * STEAL_HORIZON / chunk) + 1)

    def _give_back(self, rng: _Range | None) -> None:
        if rng is not None and rng.next < rng.end:
            self.pool.append(_Range(rng.next, rng.end))
            self.pool.sort(key=lambda r: r.next)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()
        if self.feeding is not None:
            self.feeding(sum(1 for s in self.sources if s.stream is not None))

    # ------------------------------------------------------------------ one source

    async def run_source(self, src: _Source) -> None:
        while not self.sink.complete and src.dropped is None:
            rng = self._take(src)
            if rng is None:
                if not any(s.range is not None or s.queue for s in self._usable()) and not self.pool:
                    return  # nobody has work and none is left: done (or all others dropped)
                async with self.changed:
                    await self.changed.wait()
                continue
            src.range = rng
            src.stalled = None
            task = asyncio.create_task(self._pull(src, rng))
            src.pull = task
            try:
                await task
            except _DroppedError as exc:
                self._drop(src, exc.reason, exc.error)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if src.stalled is None or (current is not None and current.cancelling()):
                    raise
                self._drop(src, src.stalled, None)
            finally:
                src.pull = None
                src.range = None
                if src.dropped is not None:
                    self._give_back(rng)
                    for queued in src.queue:
                        self._give_back(queued)
                    src.queue.clear()
            await self._notify()

    def _drop(self, src: _Source, reason: str, error: BaseException | None) -> None:
        src.dropped = reason
        src.error = error
        if isinstance(error, ChunkMismatchError) and self.mismatch is None:
            self.mismatch = error
        if len(self.sources) == 1 or not self._usable():
            # nobody to take over: the fetch fails now, with what went wrong
            if isinstance(error, BaseException):
                raise error
            raise RxChannelError(f"{src.name}: {reason}")

    async def _pull(self, src: _Source, rng: _Range) -> None:
        manifest = self.manifest
        start, end = rng.next * manifest.chunk_size, min(rng.end * manifest.chunk_size, manifest.size)
        data = FileRequest(start, end=end).to_bytes()
        assert src.peer is not None
        stream = src.peer.request_stream(f"files/{self.remote_path}", data, window=self.window, auto_ack=False)
        src.stream = stream
        src.pull_started = src.last_item = self.loop.time()
        if self.feeding is not None:
            self.feeding(sum(1 for s in self.sources if s.stream is not None))
        buf = bytearray()
        unacked = 0
        first = True
        try:
            while rng.next < rng.end:
                try:
                    item = await stream.next()
                except StopAsyncIteration:
                    raise _DroppedError(f"its stream ended before chunk {rng.next}") from None
                except RxChannelError as exc:
                    raise _DroppedError(str(exc), exc) from None
                src.last_item = self.loop.time()
                if first:
                    first = False
                    self._check_first(src, item, start)
                    src.item_size = len(item.data)
                src.received += len(item.data)
                unacked += 1
                if buf or len(item.data) != manifest.length(rng.next):
                    buf += item.data
                    pieces: list[bytes] = []
                    while rng.next + len(pieces) < rng.end and len(buf) >= manifest.length(rng.next + len(pieces)):
                        n = manifest.length(rng.next + len(pieces))
                        pieces.append(bytes(buf[:n]))
                        del buf[:n]
                else:  # an item that is exactly the next chunk (hub and manifest chunks alike): no copy
                    pieces = [item.data]
                for chunk in pieces:
                    if rng.next >= rng.end:
                        break
                    n = len(chunk)
                    try:
                        new = await self.sink.write_chunk(rng.next, chunk, source=src.name)
                    except ChunkMismatchError as exc:
                        raise _DroppedError(str(exc), exc) from None
                    if new:
                        src.chunks += 1
                        src.delivered += n
                    rng.next += 1
                    if unacked:
                        stream.ack(unacked)
                        unacked = 0
                    if self.progress is not None:
                        in_flight = sum(s.stream.in_flight for s in self.sources if s.stream is not None)
                        self.progress(self.sink.done_bytes, manifest.size, in_flight)
        finally:
            if src.pull_started is not None:
                src.busy_seconds += self.loop.time() - src.pull_started
            src.pull_started = None
            src.stream = None
            await stream.aclose()

    def _check_first(self, src: _Source, item: Any, start: int) -> None:
        try:
            info = item_info(item)
        except MetadataError as exc:
            raise _DroppedError(f"unreadable item metadata: {exc}") from None
        if info.get("offset", 0) != start:
            raise _DroppedError(f"it started at offset {str(info.get('offset'))[:40]}, not at {start}")
        announced = info.get("manifest")
        if isinstance(announced, dict) and announced.get("id") not in (None, self.manifest.id):
            raise _DroppedError("its file changed: the manifest it announces is not the authority's")

    # ------------------------------------------------------------------ stalls

    async def watch(self) -> None:
        """Drop a source that has had credit and sent nothing for ``stall_timeout`` seconds."""
        tick = min(1.0, self.stall_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            for src in self.sources:
                if src.pull is not None and src.stream is not None and now - src.last_item > self.stall_timeout:
                    src.stalled = f"stalled: nothing received for {self.stall_timeout:g} s"
                    src.pull.cancel()


def _runs(missing: list[int]) -> list[_Range]:
    runs: list[_Range] = []
    for index in missing:
        if runs and runs[-1].end == index:
            runs[-1].end += 1
        else:
            runs.append(_Range(index, index + 1))
    return runs


def _split(runs: list[_Range], parts: int) -> list[list[_Range]]:
    """``runs`` cut into ``parts`` consecutive shares of (nearly) equal chunk counts."""
    total = sum(r.end - r.next for r in runs)
    shares: list[list[_Range]] = [[] for _ in range(parts)]
    quota = [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
    part = 0
    for run in runs:
        at = run.next
        while at < run.end:
            while part < parts - 1 and quota[part] == 0:
                part += 1
            n = min(run.end - at, quota[part]) if part < parts - 1 else run.end - at
            shares[part].append(_Range(at, at + n))
            quota[part] -= n
            at += n
    return shares


def _same(a: Manifest, b: Manifest) -> str | None:
    if a == b:
        return None
    if a.size != b.size:
        return f"its file has {b.size} bytes, the authority's {a.size}"
    if a.sha256 != b.sha256:
        return "its file's SHA-256 differs from the authority's"
    return "its manifest differs from the authority's (chunk size or digests)"


async def fetch_verified(
    sources: Sequence[tuple[str, Peer | None]],
    remote_path: str,
    out: str | os.PathLike[str],
    *,
    window: Any = None,
    resume: bool = True,
    overwrite: bool = False,
    max_size: int | None = None,
    progress: Progress | None = None,
    feeding: Callable[[int], None] | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    unreachable: dict[str, str] | None = None,
) -> tuple[ChunkSink, str, list[SourceReport]]:
    """Fetch ``remote_path`` from ``sources`` (name, peer) into ``out``, every chunk verified.

    The first source is the manifest's authority and must have a peer; another whose peer
    is None (it could not be dialed: ``unreachable[name]`` says why) or whose manifest
    differs is reported as dropped and not used.

    Returns:
        the finished sink, the file's SHA-256, and one report per source, in order.

    Raises:
        IntegrityError / ChunkMismatchError: the authority's manifest is malformed, or (with
            every source dropped) a chunk did not match.
        RemoteError / ConnectionLostError: the authority refused or went away before its
            manifest; or every source was dropped (the last one's error).
    """
    if not sources or sources[0][1] is None:
        raise ValueError("the first source (the manifest's authority) needs a connected peer")
    stall_timeout = float(stall_timeout)
    if not stall_timeout > 0:
        raise ValueError("stall_timeout must be positive")
    states = [_Source(name, peer) for name, peer in sources]
    for state in states:
        if state.peer is None:
            state.dropped = f"unreachable: {(unreachable or {}).get(state.name, 'not connected')}"

    async def manifest_of(state: _Source) -> Manifest | BaseException:
        assert state.peer is not None
        try:
            return await asyncio.wait_for(fetch_manifest(state.peer, remote_path), stall_timeout)
        except (RxChannelError, TimeoutError, IntegrityError) as exc:
            return exc

    asking = [s for s in states if s.peer is not None]
    answers = await asyncio.gather(*(manifest_of(s) for s in asking))
    authority = answers[0]
    if isinstance(authority, BaseException):
        raise authority
    for state, answer in zip(asking[1:], answers[1:], strict=True):
        if isinstance(answer, BaseException):
            state.dropped = f"no manifest: {answer or type(answer).__name__}"
        else:
            state.dropped = _same(authority, answer)
    sink = ChunkSink(out, authority, resume=resume, overwrite=overwrite, max_size=max_size)
    missing = await sink.open()
    try:
        swarm = _Swarm(
            sink,
            states,
            remote_path,
            window=window,
            progress=progress,
            feeding=feeding,
            stall_timeout=stall_timeout,
        )
        usable = swarm._usable()
        shares = _split(_runs(missing), len(usable))
        for state, share in zip(usable, shares, strict=True):
            state.queue = share  # each source starts on an equal share; stealing evens out their rates
        if missing:
            watcher = asyncio.create_task(swarm.watch())
            try:
                async with asyncio.TaskGroup() as group:
                    for state in usable:
                        group.create_task(swarm.run_source(state))
            except BaseExceptionGroup as group_error:
                raise _first(group_error, swarm.mismatch) from None
            finally:
                watcher.cancel()
        if not sink.complete:
            dropped = [s for s in states if s.error is not None]
            if swarm.mismatch is not None:
                raise swarm.mismatch
            if dropped and dropped[-1].error is not None:
                raise dropped[-1].error
            raise RxChannelError("every source was dropped: " + "; ".join(f"{s.name}: {s.dropped}" for s in states))
        digest = await sink.finish()
    except BaseException:
        await sink.abort()
        raise
    return sink, digest, [s.report() for s in states]


def _first(group: BaseExceptionGroup[BaseException], mismatch: ChunkMismatchError | None) -> BaseException:
    """The error to raise for a failed group: a chunk mismatch if there was one (an integrity failure)."""
    errors = list(_leaves(group))
    for error in errors:
        if not isinstance(error, asyncio.CancelledError | ChunkMismatchError):
            if mismatch is not None and isinstance(error, RxChannelError) and not isinstance(error, IntegrityError):
                return mismatch
            return error
    return mismatch or errors[0]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for error in group.exceptions:
        out.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return out
