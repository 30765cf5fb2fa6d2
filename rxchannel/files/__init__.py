"""Files over the wire: demand-driven sources, verifying sinks, whole-file transfers, the hub.

* :mod:`.source` — :class:`FileSource`, read one chunk per item pulled (never ahead of demand);
* :mod:`.sink` — :class:`FileSink`, a partial file verified then moved into place atomically;
* :mod:`.transfer` — :func:`list_remote`, :func:`fetch_file`, :func:`fetch_directory`, :func:`push_file`;
* :mod:`.manifest` — :class:`Manifest`, a digest per chunk (computed once, cached by the hub);
* :mod:`.chunks` — :class:`ChunkSink`, each chunk verified before it is written in place;
* :mod:`.swarm` — one file from several sources at once, balanced by how fast each keeps up;
* :mod:`.protocol` — the JSON of a ``files/`` stream: the request (resume, range), the file info;
* :mod:`.sandbox` — names kept inside a root.

The hub that serves files is :mod:`rxchannel.hub`, one room up.
"""

from __future__ import annotations

from ._common import CHUNK_SIZE, FETCH_WINDOW, IntegrityError, sha256_file
from .chunks import ChunkMismatchError, ChunkSink
from .manifest import Manifest, ManifestCache, compute_manifest
from .sandbox import PathRefusedError, resolve_inside
from .sink import FileBusyError, FileSink, TargetExistsError, TooLargeError
from .source import FILE_CHANGED, FileChangedError, FileSource
from .swarm import SourceReport, fetch_manifest
from .transfer import (
    DirectoryResult,
    Progress,
    RemoteFile,
    RemoteListing,
    TransferResult,
    fetch_directory,
    fetch_file,
    list_remote,
    push_file,
)

__all__ = [
    "CHUNK_SIZE",
    "ChunkMismatchError",
    "ChunkSink",
    "DirectoryResult",
    "FETCH_WINDOW",
    "FILE_CHANGED",
    "FileBusyError",
    "FileChangedError",
    "FileSink",
    "FileSource",
    "IntegrityError",
    "Manifest",
    "ManifestCache",
    "PathRefusedError",
    "Progress",
    "RemoteFile",
    "RemoteListing",
    "SourceReport",
    "TargetExistsError",
    "TooLargeError",
    "TransferResult",
    "compute_manifest",
    "fetch_directory",
    "fetch_file",
    "fetch_manifest",
    "list_remote",
    "push_file",
    "resolve_inside",
    "sha256_file",
]


def __getattr__(name: str) -> object:
    if name == "Hub":  # moved one room up; kept one release here, with a warning
        import importlib
        import warnings

        warnings.warn("rxchannel.files.Hub moved to rxchannel.hub.Hub", DeprecationWarning, stacklevel=2)
        return importlib.import_module("rxchannel.hub").Hub
    raise AttributeError(f"module 'rxchannel.files' has no attribute {name!r}")
