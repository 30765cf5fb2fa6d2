"""The operating system's streams as demand-driven sources, sinks and stages.

Pipes, sockets, standard input and output, subprocesses: the OS's own backpressure (a
full pipe, a slow socket: ``drain()`` waiting) is the demand, and it crosses into the
RSocket credit of a remote stream, so ``rxchannel fetch URL x -o - | slow-reader`` slows
the hub's disk, and a subprocess between two remote streams is never more than its pipe
buffers ahead of the demand downstream.

* :func:`to_writer` — items into an :class:`asyncio.StreamWriter`, the next pulled once
  ``drain()`` returned (:func:`drain`: one drain, a reader gone is :class:`PipeClosedError`);
  :func:`from_reader` — an :class:`asyncio.StreamReader` read one chunk per item pulled;
* :func:`through` (:class:`Through`) — a subprocess as a transform stage;
  :class:`ProcessFailedError` when it exits non-zero; :func:`check_argv`;
* :func:`stdout_writer`, :func:`stdin_source` — the standard streams (pipes, terminals,
  sockets, regular files);
* :func:`fetch_to`, :func:`push_from` — a hub's file into a writer, a source into a
  hub's inbox, checked end to end (:class:`PipeResult`);
* :class:`PipeClosedError` — the reader went away (EPIPE).

This layer uses only the runtime, the files layer and asyncio; the ReactiveX facade
(``rxchannel.reactive``: ``through``, ``from_reader``, ``RxWriterSink``) and the async
facade (``rxchannel.aio``) wrap it.
"""

from __future__ import annotations

from ._process import ProcessFailedError, Through, check_argv, through
from ._stdio import stdin_source, stdout_writer
from ._streams import PipeClosedError, Writer, drain, from_reader, to_writer
from ._transfer import PipeResult, fetch_to, push_from

__all__ = [
    "PipeClosedError",
    "PipeResult",
    "ProcessFailedError",
    "Through",
    "Writer",
    "check_argv",
    "drain",
    "fetch_to",
    "from_reader",
    "push_from",
    "stdin_source",
    "stdout_writer",
    "through",
    "to_writer",
]
