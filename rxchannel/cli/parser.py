"""The command line: every option has help text and is checked when parsed.

A value that cannot work (``--port 99999``, ``--chunk-size 0``, ``--window abc``, a URL
of no known kind) is refused here, before anything starts, with a message that names the
option and what it accepts; usage errors exit 1 (exit 2 means "the hub refused").
"""

from __future__ import annotations

import argparse
import os
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from rxchannel.files import FETCH_WINDOW
from rxchannel.hub.limits import HUB_CONNECTION, HubLimits
from rxchannel.transports import KINDS, ListenLimits, kind_of

from .endpoints import add_endpoint_options
from .errors import UsageError, printable
from .ice import add_ice_options, add_path_options
from .jetstream import add_jetstream_options
from .loops import add_loop_option
from .units import format_size
from .values import CHUNK, PORT, SIZE, count, positive_float, seconds, size

__all__ = ["build_parser"]

TRANSPORTS = tuple(KINDS)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of exiting with status 2."""

    def error(self, message: str) -> NoReturn:
        # every error line already starts with "rxchannel: " (.errors.fail): the command is named in the hint
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _version() -> str:
    try:
        return version("rxchannel")
    except PackageNotFoundError:  # running from a checkout that was not installed
        return "(not installed)"


def _window(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a window: use a number of chunks (e.g. 32) or 'auto'"
        ) from None
    if not 1 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: use 1..1048576 chunks, or 'auto'")
    return value


def _processes(text: str) -> str:
    if text == "auto":
        return text
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process count: use 1..256, or 'auto'")
    return str(int(text))


def _url(text: str) -> str:
    try:
        kind_of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _utf8(text: str, what: str) -> str:
    """``text`` as given, if it can name something on a hub (names on the wire are UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            f"'{printable(text)}' is not valid UTF-8, and {what} on a hub are UTF-8 text: "
            "check the name's encoding ('rxchannel ls URL' shows the hub's names)"
        ) from None
    return text


#: PATH values that mean the whole share (a directory fetch of everything the hub lists)
WHOLE_SHARE = ("", "/", ".", "./")


def _remote_path(text: str) -> str:
    return _utf8(text, "names")


def _inbox_name(text: str) -> str:
    return _utf8(text, "inbox names")


#: the defaults the hub's options show and take: the library's own
HUB = HubLimits()
LISTEN = ListenLimits()


def _add_common(p: argparse.ArgumentParser, *, hub: bool) -> None:
    add_path_options(p, hub=hub)
    add_ice_options(p, hub=hub)
    rsocket = p.add_argument_group("connection")
    rsocket.add_argument(
        "--secret",
        default=os.environ.get("RXCHANNEL_SECRET"),
        help="shared secret peers present in SETUP (default: $RXCHANNEL_SECRET; none: no authentication)",
    )
    rsocket.add_argument(
        "--keepalive",
        **seconds("a keepalive interval", HUB_CONNECTION.keepalive_interval),
        help=f"seconds between keepalives the dialing side sends (default {HUB_CONNECTION.keepalive_interval:g})",
    )
    rsocket.add_argument(
        "--max-lifetime",
        **seconds("a lifetime", HUB_CONNECTION.max_lifetime),
        help=f"seconds of silence before the other side is declared dead (default {HUB_CONNECTION.max_lifetime:g})",
    )
    rsocket.add_argument(
        "--resume-timeout",
        **seconds("a timeout", 150.0 if hub else 120.0),
        help="a broken connection is resumed (RSocket RESUME) for this long before its transfers fail: "
        + ("how long the hub keeps a session (default 150)" if hub else "how long to keep re-dialing (default 120)"),
    )
    rsocket.add_argument(
        "--no-session-resume",
        action="store_true",
        help="do not keep sessions across broken connections"
        + (" (workers then get plain connections)" if hub else " (a fetch still resumes its .part when run again)"),
    )
    if not hub:
        rsocket.add_argument(
            "--connect-timeout",
            **seconds("a timeout", 20.0),
            help="give up when the hub does not answer (or no WebRTC channel opens) within this (default 20)",
        )
    rsocket.add_argument(
        "--max-streams",
        **count("a stream count", HUB_CONNECTION.max_streams),
        help=f"streams the other side may have open at once (default {HUB_CONNECTION.max_streams})",
    )
    add_loop_option(p)


def _add_output(p: argparse.ArgumentParser, *, lines: bool = False) -> None:
    what = "one JSON line per file" if lines else "one JSON line: the summary"
    p.add_argument("--json", action="store_true", help=f"print {what}, or {{error, exit}} on failure")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rxchannel",
        description="Share files between a hub and workers over WebRTC, TCP or WebSocket, with demand that "
        "travels from the receiver back to the sender's disk.",
        epilog="exit codes: 0 ok, 1 usage or local error, 2 the hub refused, 3 integrity failure, "
        "4 connection failed or lost, 130 interrupted; a fetch that stopped keeps a .part and resumes when run again",
    )
    parser.add_argument("--version", action="version", version=f"rxchannel {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    serve = sub.add_parser("serve", help="share a directory as a hub", description="Share ROOT as a hub.")
    serve.add_argument("root", metavar="ROOT", help="the directory to share (read-only: pushes go to --inbox)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface: one URL is printed per address)",
    )
    serve.add_argument("--port", type=PORT, default=8765, help="port to listen on (default 8765; 0 picks a free one)")
    serve.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="webrtc",
        help="webrtc: DataChannels, signaling at http://HOST:PORT (default); tcp: tcp://HOST:PORT; "
        "ws: ws://HOST:PORT/rsocket",
    )
    serve.add_argument("--inbox", default=None, help="where pushed files go (default: ROOT.inbox beside ROOT)")
    serve.add_argument(
        "--inbox-public",
        action="store_true",
        help="allow an --inbox inside ROOT, where every upload is listed and served to everyone",
    )
    serve.add_argument(
        "--chunk-size",
        **size(HUB.chunk_size, CHUNK),
        help=f"bytes per item of a file stream (default {format_size(HUB.chunk_size)})",
    )
    serve.add_argument(
        "--max-connections",
        **count("a connection count", LISTEN.max_connections),
        help=f"connections at once (default {LISTEN.max_connections}; an eighth of it per address)",
    )
    serve.add_argument(
        "--max-unfinished",
        **size(LISTEN.max_unfinished),
        help="what messages half-sent (WebSocket messages, TCP frames) may hold on all connections together; "
        "past it the least-proven sender of the most stalled one is dropped "
        f"(default {format_size(LISTEN.max_unfinished)})",
    )
    serve.add_argument(
        "--max-upload",
        **size(HUB.max_upload),
        help=f"largest push accepted (default {format_size(HUB.max_upload)})",
    )
    serve.add_argument(
        "--max-upload-per-address",
        **size(HUB.max_upload_per_address),
        help="what one address may hold in the inbox, finished and unfinished pushes together, when the hub has "
        f"no --secret (default {format_size(HUB.max_upload_per_address or 0)}; with a secret, peers are "
        "authenticated and only --max-upload applies)",
    )
    serve.add_argument(
        "--max-open-files",
        **count("a file count", HUB.max_open_files),
        help=f"files open for streams at once (default {HUB.max_open_files}; "
        f"{HUB.max_files_per_connection} per connection)",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="what the hub logs on stderr: connections, transfers and refusals at info (default info)",
    )
    serve.add_argument("--log-json", action="store_true", help="log one JSON object per line instead of text")
    serve.add_argument(
        "--processes",
        type=_processes,
        default="auto",
        metavar="N",
        help="processes serving the one port (default auto: one per core for WebRTC, whose DTLS and SCTP "
        "run in Python; else 1); limits are shared out among them",
    )
    serve.add_argument("--process-of", default=None, help=argparse.SUPPRESS)  # set by the parent of N processes
    meet = serve.add_argument_group("rendezvous (a hub with no inbound port)")
    meet.add_argument(
        "--rendezvous",
        metavar="URL",
        help="register at this rendezvous (http://HOST:PORT) and take workers' signaling through it: workers "
        "then dial URL/hubs/NAME and this hub needs no open port",
    )
    meet.add_argument("--name", help="the name to register at the rendezvous (letters, digits, . _ -)")
    meet.add_argument(
        "--rendezvous-secret",
        default=os.environ.get("RXCHANNEL_RENDEZVOUS_SECRET"),
        metavar="S",
        help="the rendezvous's --secret (default: $RXCHANNEL_RENDEZVOUS_SECRET)",
    )
    add_jetstream_options(serve)
    add_endpoint_options(serve)
    _add_common(serve, hub=True)

    fetch = sub.add_parser(
        "fetch",
        help="fetch a file (or a directory: PATH/, or an endpoint's response) from a hub",
        description="Fetch PATH from the hub at URL into a local file, verified by SHA-256; an interrupted "
        "fetch resumes from its .part when run again. PATH ending in '/' fetches the directory ('/' the whole "
        "share, with -o DIR/); endpoints/NAME/PATH fetches the response of one of the hub's endpoints "
        "(HTTP status >= 400: exit 2).",
    )
    fetch.add_argument("url", type=_url, metavar="URL", help="the URL 'rxchannel serve' printed")
    fetch.add_argument(
        "remote_path",
        type=_remote_path,
        metavar="PATH",
        help="the file on the hub (as 'rxchannel ls' shows it); a directory ends in '/'; '/' is the whole share",
    )
    fetch.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to write: a file name, or an existing directory (or one ending in '/') to write into, "
        "or '-' for standard output (default: PATH's name in the current directory)",
    )
    fetch.add_argument("--force", action="store_true", help="replace an existing output file")
    fetch.add_argument(
        "--parents",
        action="store_true",
        help="create the missing directories above OUT too (without it, only OUT's own directory is created)",
    )
    fetch.add_argument(
        "--allow-empty",
        action="store_true",
        help="a directory with no files on the hub is a success (without it, fetching nothing exits 2)",
    )
    fetch.add_argument(
        "--window",
        type=_window,
        default=FETCH_WINDOW,
        help=f"chunks in flight: a number, or 'auto' to adapt (default {FETCH_WINDOW}: 8 MiB)",
    )
    fetch.add_argument("--no-resume", action="store_true", help="start over instead of resuming from OUT.part")
    fetch.add_argument(
        "--shared",
        action="store_true",
        help="join the hub's shared read of the file (share/PATH: one read for the workers that ask together); "
        "if late or detached, continue from the bytes received on files/PATH",
    )
    fetch.add_argument(
        "--max-size", type=SIZE, default=None, help="refuse files larger than this (default: the free disk space)"
    )
    many = fetch.add_argument_group("several sources (each chunk verified as it arrives)")
    many.add_argument(
        "--source",
        dest="sources",
        action="append",
        type=_url,
        metavar="URL2",
        help="another hub (or a worker serving what it fetched) with the same file: chunks come from URL and "
        "every --source at once, each in proportion to how fast it keeps up; URL is the authority for the "
        "file's manifest (repeatable)",
    )
    many.add_argument(
        "--verify",
        choices=("file", "chunks"),
        default=None,
        help="'chunks': check each chunk against the hub's manifest before writing it, and resume from the "
        "chunks of OUT.part that still match (implied by --source); 'file' (default with one hub): the "
        "whole file's SHA-256 at the end",
    )
    many.add_argument(
        "--stall-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="drop a source that sends nothing for this long while it has credit; its chunks come from the "
        "others (default 15)",
    )
    _add_output(fetch)
    fetch.add_argument("--progress", action="store_true", help="show the progress bar on a terminal even with --json")
    _add_common(fetch, hub=False)

    send = sub.add_parser(
        "send", help="push a file into a hub's inbox", description="Push FILE into the inbox of the hub at URL."
    )
    send.add_argument("url", type=_url, metavar="URL", help="the URL 'rxchannel serve' printed")
    send.add_argument("file", metavar="FILE", help="the local file to send, or '-' for standard input (needs --name)")
    send.add_argument(
        "--name",
        type=_inbox_name,
        help="its name in the inbox (default: FILE's name); names already there are refused",
    )
    _add_output(send)
    _add_common(send, hub=False)

    ls = sub.add_parser(
        "ls", help="list a hub's files", description="List the files the hub at URL shares (under PREFIX)."
    )
    ls.add_argument("url", type=_url, metavar="URL", help="the URL 'rxchannel serve' printed")
    ls.add_argument(
        "prefix", nargs="?", type=_remote_path, default="", metavar="PREFIX", help="only paths starting with this"
    )
    _add_output(ls, lines=True)
    _add_common(ls, hub=False)

    relay = sub.add_parser(
        "rendezvous",
        help="relay signaling for hubs that have no open port",
        description="Run a rendezvous: hubs dial out to it and register a name (serve --rendezvous URL --name "
        "NAME); workers and pages use URL/hubs/NAME as the hub's URL. It relays offers and answers, never data.",
    )
    relay.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    relay.add_argument("--port", type=PORT, default=8700, help="port to listen on (default 8700; 0 picks a free one)")
    relay.add_argument(
        "--secret",
        default=os.environ.get("RXCHANNEL_RENDEZVOUS_SECRET"),
        help="hubs must know it to register (default: $RXCHANNEL_RENDEZVOUS_SECRET; required)",
    )
    relay.add_argument("--max-hubs", **count("a hub count", 1024), help="hubs registered at once")
    relay.add_argument(
        "--max-connections",
        **count("a connection count", 256),
        help="connections at once (default 256; an eighth of it per address); when they are all taken, a newcomer "
        "takes the place of one that has not sent its request",
    )
    relay.add_argument(
        "--request-rate",
        type=positive_float("a rate", "requests per second"),
        default=10.0,
        metavar="PER_S",
        help="relayed requests per second per client address (default 10)",
    )
    relay.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info", help="what it logs (default info)"
    )
    relay.add_argument("--log-json", action="store_true", help="log one JSON object per line instead of text")
    add_loop_option(relay)

    demo = sub.add_parser(
        "demo",
        help="a hub and a worker in two processes on loopback",
        description="Start a hub process on loopback, fetch a generated file from it as a worker, and "
        "print throughput, memory and the verified digest.",
    )
    demo.add_argument("--size", type=SIZE, default=32 << 20, help="size of the generated file (default 32MiB)")
    demo.add_argument(
        "--window", type=_window, default=FETCH_WINDOW, help=f"chunks in flight, or 'auto' (default {FETCH_WINDOW})"
    )
    demo.add_argument(
        "--transport", choices=TRANSPORTS, default="webrtc", help="the transport between them (default webrtc)"
    )
    add_path_options(demo, hub=False)
    demo.set_defaults(via="webrtc")  # the demo shows WebRTC; --via auto takes the direct path on loopback
    add_loop_option(demo)

    sub.add_parser(
        "bench",
        help="run the benchmarks side by side (from a source checkout; see benchmarks/ --help)",
        add_help=False,
    )
    return parser
