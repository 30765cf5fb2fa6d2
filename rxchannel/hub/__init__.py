"""The file-sharing hub: its routes (files, buffers, pushes, shared reads, listings), its
limits, and what it serves over HTTP beside them.

* :mod:`._hub` — :class:`Hub`, the routes of the hub (``docs/architecture.md``) over any transport, sandboxed
  to one root.
* :mod:`._parts` — :class:`HeldFile` (a file stream's place in the open-file budget) and the inbox's helpers.
"""

from __future__ import annotations

from ._hub import Hub

__all__ = ["Hub"]
