"""Endpoints on the hub's command line: ``serve --endpoint NAME=URL`` and its limits
(the worker's side, ``fetch URL endpoints/NAME/PATH``, is :mod:`.fetch_endpoint`)."""

from __future__ import annotations

import argparse

from rxchannel.hub.endpoints import Endpoint, EndpointLimits, parse_endpoint

from .values import SIZE, seconds

__all__ = ["ENDPOINTS", "add_endpoint_options", "endpoint_limits", "is_endpoint"]

#: the route prefix of a hub's endpoints
ENDPOINTS = "endpoints/"


def is_endpoint(remote_path: str) -> bool:
    """Whether a fetch's PATH names an endpoint (``endpoints/NAME/...``) rather than a file."""
    return remote_path.startswith(ENDPOINTS)


def _endpoint(text: str) -> Endpoint:
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_endpoint_options(serve: argparse.ArgumentParser) -> None:
    """``serve``'s endpoint options."""
    group = serve.add_argument_group("endpoints (HTTP services behind the hub, route endpoints/NAME/PATH)")
    group.add_argument(
        "--endpoint",
        action="append",
        type=_endpoint,
        default=[],
        metavar="NAME=URL",
        help="serve http://HOST:PORT[/prefix] to workers as endpoints/NAME/<path> (repeatable); only the "
        "endpoints named here are reachable, and redirects are followed only within them",
    )
    group.add_argument(
        "--endpoint-timeout",
        **seconds("a timeout", 30.0),
        help="an upstream that sends no response, or nothing more of a body a worker waits for, for this long "
        "fails the stream (default 30)",
    )
    group.add_argument(
        "--endpoint-max-request",
        type=SIZE,
        default=1 << 30,
        metavar="BYTES",
        help="the largest request body a worker may send to an endpoint (default 1GiB)",
    )
    group.add_argument(
        "--endpoint-max-response",
        type=SIZE,
        default=None,
        metavar="BYTES",
        help="the largest response body passed on (default: no limit; the hub buffers none of it)",
    )


def endpoint_limits(args: argparse.Namespace) -> EndpointLimits:
    """The limits ``serve``'s options set."""
    return EndpointLimits(
        response_timeout=args.endpoint_timeout,
        idle_timeout=args.endpoint_timeout,
        max_request_body=args.endpoint_max_request,
        max_response_body=args.endpoint_max_response,
    )
