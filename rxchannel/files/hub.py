"""The file-sharing hub: DESIGN.md §2's routes over any transport, sandboxed to one root.

| route                | interaction      | what                                                     |
|----------------------|------------------|----------------------------------------------------------|
| ``files/<path>``     | request-stream   | the file's chunks, read on demand; JSON ``{"offset"}`` resumes |
| ``files``            | request-response | JSON list of ``{"path", "size"}`` (optional ``{"prefix"}``) |
| ``buffers/<path>``   | request-response | the whole file as one payload, up to ``max_buffer`` bytes |
| ``push/<path>``      | request-channel  | the requester streams a file into the inbox; receipt back |

Any path that is absolute, contains ``..``, or resolves (symlinks included) outside the
root is refused with ERROR[REJECTED] saying why; error texts name only the requested
relative path, never a local one.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from rxchannel.core import ApplicationError, ErrorCode
from rxchannel.runtime import Payload, Request, Router

from ._common import CHUNK_SIZE, IntegrityError
from .sandbox import PathRefusedError, resolve_inside
from .sink import FileSink, TargetExistsError
from .source import FileSource

__all__ = ["Hub"]


class Hub:
    """Serves the files under ``root`` (and receives pushes into ``inbox``).

    Attributes:
        sources: file sources currently open (tests and benchmarks read their offsets).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        inbox: str | os.PathLike[str] | None = None,
        chunk_size: int = CHUNK_SIZE,
        max_buffer: int = 16 * 1024 * 1024,
        max_list: int = 10_000,
    ):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        self.inbox = Path(inbox).resolve() if inbox is not None else self.root / "inbox"
        self.chunk_size = chunk_size
        self.max_buffer = max_buffer
        self.max_list = max_list
        self.sources: set[FileSource] = set()
        self.router = Router()
        self.router.stream("files/")(self.stream_file)
        self.router.response("files")(self.list_files)
        self.router.response("buffers/")(self.buffer)
        self.router.channel("push/")(self.receive_push)

    def _file(self, request: Request, prefix: str) -> Path:
        relative = (request.route or "")[len(prefix) :]
        path = resolve_inside(self.root, relative)
        try:
            is_file = path.is_file()
        except OSError:
            is_file = False
        if not is_file:
            raise ApplicationError(f"no such file: {relative[:200]!r}", code=ErrorCode.REJECTED)
        return path

    async def stream_file(self, request: Request) -> FileSource:
        path = self._file(request, "files/")
        offset, prefix = 0, None
        if request.data:
            try:
                spec = json.loads(request.data)
                offset, prefix = spec.get("offset", 0), spec.get("sha256")
            except (ValueError, AttributeError):
                raise ApplicationError(
                    'request data must be JSON {"offset": N, "sha256": "<hex of those N bytes>"}',
                    code=ErrorCode.INVALID,
                ) from None
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ApplicationError(
                    f"offset must be a non-negative integer, got {str(offset)[:40]}", ErrorCode.INVALID
                )
            if prefix is not None and not (isinstance(prefix, str) and len(prefix) == 64):
                raise ApplicationError(
                    "sha256 must be the 64-character hex digest of the first offset bytes", ErrorCode.INVALID
                )
        try:
            return FileSource(
                path, chunk_size=self.chunk_size, offset=offset, expect_prefix=prefix, tracker=self.sources
            )
        except ValueError as exc:
            raise ApplicationError(str(exc), code=ErrorCode.INVALID) from None

    async def list_files(self, request: Request) -> bytes:
        prefix = ""
        if request.data:
            try:
                prefix = str(json.loads(request.data).get("prefix", ""))
            except (ValueError, AttributeError):
                raise ApplicationError('request data must be JSON {"prefix": "..."}', code=ErrorCode.INVALID) from None
        entries = await asyncio.to_thread(lambda: list(self._walk(prefix)))
        return json.dumps(entries).encode()

    def _walk(self, prefix: str) -> Iterable[dict[str, Any]]:
        count = 0
        for directory, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                path = Path(directory, name)
                relative = path.relative_to(self.root).as_posix()
                if not relative.startswith(prefix) or name.endswith((".part", ".corrupt")):
                    continue
                try:
                    real = resolve_inside(self.root, relative)
                except PathRefusedError:
                    continue  # a symlink pointing out: not served, not listed
                if real.is_file():
                    yield {"path": relative, "size": real.stat().st_size}
                    count += 1
                    if count >= self.max_list:
                        return

    async def buffer(self, request: Request) -> bytes:
        path = self._file(request, "buffers/")
        size = path.stat().st_size
        if size > self.max_buffer:
            raise ApplicationError(
                f"{path.name} is {size} bytes; buffers are limited to {self.max_buffer}: stream it from files/",
                code=ErrorCode.REJECTED,
            )
        return await asyncio.to_thread(path.read_bytes)

    async def receive_push(self, request: Request) -> AsyncIterator[Payload]:
        """Write the requester's items to the inbox, then send one receipt.

        Each upload writes its own private temporary file; the finished file is moved into
        place only if the name is free (decided atomically), so concurrent uploads of one
        name never mix, and the receipt describes exactly the bytes on disk.
        """
        relative = (request.route or "")[len("push/") :]
        if not self.inbox.exists():
            self.inbox.mkdir(parents=True, exist_ok=True)
        target = resolve_inside(self.inbox, relative)
        if target.exists():
            raise ApplicationError(
                f"inbox/{relative[:200]} already exists: send it under another name", ErrorCode.REJECTED
            )
        assert request.inbound is not None
        sink = FileSink(target, private_part=True, overwrite=False)
        await sink.open()
        try:
            async for item in request.inbound:  # pulling the next one acknowledges the last: writes set the pace
                await sink.write(item)
            digest = await sink.finish()
        except IntegrityError as exc:
            await sink.abort()
            raise ApplicationError(str(exc), code=ErrorCode.INVALID) from None
        except TargetExistsError:
            raise ApplicationError(
                f"inbox/{relative[:200]} already exists (another upload finished first): send it under another name",
                ErrorCode.REJECTED,
            ) from None
        except BaseException:
            await sink.abort()
            raise
        yield Payload(json.dumps({"path": relative, "size": sink.written, "sha256": digest}).encode(), last=True)
