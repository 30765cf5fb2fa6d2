"""The file-sharing hub: its routes (files, buffers, pushes, shared reads, listings), its
limits, and what it serves over HTTP beside them.

* :mod:`._hub` — :class:`Hub`, the routes of the hub (``docs/architecture.md``) over any transport, sandboxed
  to one root.
* :mod:`.limits` — :class:`HubLimits`, what a hub allows, and :data:`HUB_CONNECTION`,
  the connection settings of a hub and its workers (the CLI's defaults).
* :mod:`._parts` — :class:`HeldFile` (a file stream's place in the open-file budget) and the inbox's helpers.
* :mod:`.endpoints` — ``endpoints/<name>/<path>``: HTTP upstreams served with demand (what
  an endpoint is in ``_endpoint_config``, the path and header rules in ``_endpoint_rules``,
  one request upstream in ``_exchange``); :mod:`.endpoint_client` —
  :func:`request_endpoint`, a worker's side of them.
"""

from __future__ import annotations

from ._hub import Hub
from .endpoint_client import EndpointResponse, EndpointStatusError, request_endpoint
from .endpoints import Endpoint, EndpointLimits
from .limits import HUB_CONNECTION, HubLimits

__all__ = [
    "HUB_CONNECTION",
    "Endpoint",
    "EndpointLimits",
    "EndpointResponse",
    "EndpointStatusError",
    "Hub",
    "HubLimits",
    "request_endpoint",
]
