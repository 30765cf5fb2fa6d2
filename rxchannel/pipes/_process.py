"""A subprocess as a transform stage: items go into its standard input, its standard output
comes out as items, and demand crosses the process boundary both ways.

Downstream pulls an item: one read of the process's stdout (nothing is read before it is
asked for: the pipe's transport is paused but while a pull waits, so what the process
wrote and nobody asked for stays in its pipe, on asyncio's loop and uvloop alike).
Upstream is pulled by a feeder only once the last item was drained into the process's
stdin. So when downstream stops asking, the stdout pipe fills, the process
blocks writing, stops reading its stdin, that pipe fills, ``drain()`` waits and the
upstream source is not pulled: a remote stream upstream gets no more credit. The process
is never more than its stdout pipe (and the one read in hand) ahead of the demand
downstream, and the upstream never more than its stdin pipe ahead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections import deque
from collections.abc import AsyncIterable, Sequence
from typing import Any

from rxchannel.core import RxChannelError
from rxchannel.files import CHUNK_SIZE
from rxchannel.runtime import Payload, as_payload
from rxchannel.runtime.closing import ClosesOnExit

from ._streams import GONE, aclose

__all__ = ["ProcessFailedError", "Through", "check_argv", "through"]

#: bytes of a process's stderr kept for the error that says why it failed
STDERR_TAIL = 4096


class ProcessFailedError(RxChannelError):
    """A stage's process exited with a non-zero status (or was killed by a signal).

    Attributes:
        argv: the command.
        returncode: its exit status (negative: the signal that killed it, as asyncio says).
        stderr: the last bytes it wrote to its standard error (at most ``STDERR_TAIL``).
    """

    def __init__(self, argv: Sequence[str], returncode: int, stderr: bytes):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        if returncode < 0:
            try:
                how = f"was killed by {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"was killed by signal {-returncode}"
        else:
            how = f"exited with status {returncode}"
        tail = stderr.decode(errors="replace").strip()
        super().__init__(f"{shlex.join(self.argv)} {how}" + (f": {tail}" if tail else ""))


def check_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` as a list, checked: a non-empty sequence of strings (not one string: no shell).

    Raises:
        TypeError: a string, or anything but strings in it.
        ValueError: an empty command.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError(f"give the command as a list of arguments, e.g. {shlex.split(str(argv))!r}: no shell runs it")
    args = list(argv)
    if not args:
        raise ValueError("the command is empty")
    if not all(isinstance(a, str) for a in args):
        raise TypeError(f"every argument must be a str, got {args!r}")
    return args


class Through(ClosesOnExit):
    """``argv``'s standard output as an async iterator of :class:`Payload`, fed ``source`` on its
    standard input (see the module docstring for how demand crosses it).

    The process starts when the first item is pulled. An item is one read of its stdout
    (at most ``chunk_size`` bytes). The iteration ends when the process has closed its
    stdout and exited with status 0; it fails with:

    * :class:`ProcessFailedError` (its exit status and the tail of its stderr) when it
      exited otherwise;
    * the source's own error when the source failed: the process is killed first, so a
      partial input never ends as a complete-looking output.

    A process that stops reading early (``head -c 100``) closes its stdin: the source is
    closed then (a remote stream upstream is cancelled) and its output still counts.
    Closing the iterator early (:meth:`aclose`, leaving an ``async for``) terminates the
    process (SIGTERM, then SIGKILL after ``kill_timeout`` seconds) and closes the source.

    Attributes:
        process: the running process (None before the first pull).
        fed: bytes written into its stdin and drained.
        produced: bytes read from its stdout.
    """

    def __init__(
        self,
        argv: Sequence[str],
        source: AsyncIterable[Any],
        *,
        chunk_size: int = CHUNK_SIZE,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        kill_timeout: float = 5.0,
    ):
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.argv = check_argv(argv)
        self.chunk_size = chunk_size
        self.process: asyncio.subprocess.Process | None = None
        self.fed = 0
        self.produced = 0
        self._source = source
        self._env, self._cwd, self._kill_timeout = env, cwd, kill_timeout
        self._feeder: asyncio.Task[None] | None = None
        self._stdout: _PulledPipe | None = None
        self._stderr: deque[bytes] = deque()
        self._stderr_task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._closed = False

    def __aiter__(self) -> Through:
        return self

    async def _start(self) -> asyncio.subprocess.Process:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=write_end,
                    stderr=asyncio.subprocess.PIPE,
                    env=self._env,
                    cwd=self._cwd,
                )
            finally:
                os.close(write_end)  # the process has its own copy: its exit is our EOF
            _, self._stdout = await loop.connect_read_pipe(_PulledPipe, os.fdopen(read_end, "rb", buffering=0))
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(read_end)
            self._closed = True
            await aclose(self._source)
            raise
        self.process = process
        assert process.stdin is not None and process.stderr is not None
        with contextlib.suppress(AttributeError, NotImplementedError):
            # drained means in the pipe: nothing waits in our buffer while the process is busy
            process.stdin.transport.set_write_buffer_limits(high=0)
        self._stderr_task = asyncio.ensure_future(self._keep_stderr(process.stderr))
        self._feeder = asyncio.ensure_future(self._feed(process))
        return process

    async def _feed(self, process: asyncio.subprocess.Process) -> None:
        """Pull the source only once the last item is in the process's stdin."""
        stdin = process.stdin
        assert stdin is not None
        items = self._source.__aiter__()
        try:
            async for item in items:
                data = as_payload(item).data
                if data and not await _write(stdin, data):
                    return  # the process closed its stdin (it has read all it wants, or it died: its status says)
                self.fed += len(data)
            await _write(stdin, None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = exc  # the source failed: the output must not look complete
            _kill(process)
        finally:
            if not stdin.is_closing():
                stdin.close()
            await aclose(items)

    async def _keep_stderr(self, stderr: asyncio.StreamReader) -> None:
        """Read the process's stderr as it comes (it must never block on it), keeping the tail."""
        kept = 0
        while data := await stderr.read(STDERR_TAIL):
            self._stderr.append(data)
            kept += len(data)
            while kept - len(self._stderr[0]) >= STDERR_TAIL:
                kept -= len(self._stderr.popleft())

    async def __anext__(self) -> Payload:
        if self._closed:
            raise StopAsyncIteration
        process = self.process or await self._start()
        assert self._stdout is not None
        data = await self._stdout.read(self.chunk_size)
        if data:
            self.produced += len(data)
            return Payload(data)
        await self._finish(process)
        raise StopAsyncIteration

    async def _finish(self, process: asyncio.subprocess.Process) -> None:
        """Its stdout ended: wait for it to exit, then for its feeder and its stderr."""
        self._closed = True
        if self._stdout is not None:
            self._stdout.close()
        returncode = await process.wait()
        if self._feeder is not None:
            # it exited: nothing more goes in (a feeder still waiting for the source stops, and
            # closes it: a remote stream upstream is cancelled; one that failed has said why)
            self._feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
        if self._failure is not None:
            raise self._failure
        if returncode != 0:
            raise ProcessFailedError(self.argv, returncode, b"".join(self._stderr)[-STDERR_TAIL:])

    async def aclose(self) -> None:
        """Stop: terminate the process if it still runs, close the source. Idempotent."""
        self._closed = True
        if self._feeder is not None and not self._feeder.done():
            self._feeder.cancel()  # it closes the process's stdin and the source (CANCEL upstream)
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder
        process = self.process
        if process is None:
            await aclose(self._source)
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        await self._reap(process)
        if self._stderr_task is not None and not self._stderr_task.done():
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        """Close its stdout and wait for ``process`` to end (SIGKILL after ``kill_timeout`` seconds)."""
        if self._stdout is not None:
            self._stdout.close()
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), self._kill_timeout)
        except TimeoutError:
            _kill(process)
            await process.wait()


class _PulledPipe(asyncio.Protocol):
    """The read end of a process's stdout, read only when asked: the transport stays paused
    but while a :meth:`read` waits, and pauses again at the first data (one read, at most a
    pipe's worth, whatever the loop). What the process wrote and nobody asked for stays in
    the pipe, where it makes the process wait."""

    def __init__(self) -> None:
        self._transport: Any = None  # asyncio's ReadTransport, or uvloop's (not a subclass of it)
        self._buffer = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._transport is not None:
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, n: int) -> bytes:
        """At most ``n`` bytes, once some are there (b"" at EOF)."""
        while not self._buffer and not self._eof:
            assert self._transport is not None
            self._waiter = asyncio.get_running_loop().create_future()
            self._transport.resume_reading()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._eof = True


async def _write(stdin: asyncio.StreamWriter, data: bytes | None) -> bool:
    """Write ``data`` to a process's stdin and drain it (None: close it); False when the process
    has closed it (asyncio says EPIPE; uvloop may say its transport is closed)."""
    try:
        if data is None:
            stdin.close()
            await stdin.wait_closed()
        else:
            stdin.write(data)
            await stdin.drain()
    except GONE:
        return False
    except RuntimeError:
        if not stdin.is_closing():
            raise
        return False
    return True


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def through(
    argv: Sequence[str],
    source: AsyncIterable[Any],
    *,
    chunk_size: int = CHUNK_SIZE,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Through:
    """``source`` through the process ``argv`` (``["zstd", "-d"]``): its stdout as an async
    iterator of :class:`Payload`, read only as pulled; see :class:`Through`.

    Raises:
        TypeError / ValueError: a bad ``argv`` (checked now, not when the process starts).
    """
    return Through(argv, source, chunk_size=chunk_size, env=env, cwd=cwd)
