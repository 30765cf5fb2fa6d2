"""Where a command writes, decided before anything is dialed: ``fetch``'s output (``-o``, the
whole share, ``--parents``), what a stopped fetch keeps to resume from, and ``serve``'s
inbox (never inside ROOT unless ``--inbox-public``). No surprise writes: a fetch creates at
most the one directory the user named.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .errors import UsageError, printable
from .parser import WHOLE_SHARE
from .units import format_size

__all__ = [
    "check_inbox",
    "check_parents",
    "directory_target",
    "file_target",
    "free_space",
    "is_directory_fetch",
    "kept_to_resume",
]


def free_space(out: Path) -> int:
    """What a fetch may write by default: the free space where ``out`` goes, minus a reserve."""
    directory = out.parent if str(out.parent) else Path(".")
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return max(0, shutil.disk_usage(directory).free - (64 << 20))


def file_target(args: argparse.Namespace) -> Path:
    """Where a single-file fetch writes: ``-o`` (a file, or a directory to write into) or PATH's name."""
    name = args.remote_path.rstrip("/").rsplit("/", 1)[-1]
    if args.output is None:
        return Path(name)
    out = Path(args.output)
    return out / name if args.output.endswith("/") or out.is_dir() else out


def is_directory_fetch(args: argparse.Namespace) -> bool:
    return bool(args.remote_path.endswith("/") or args.remote_path in WHOLE_SHARE)


def directory_target(args: argparse.Namespace) -> Path:
    """Where a directory fetch writes: ``-o`` or the directory's own name (the whole share needs ``-o``)."""
    if args.output:
        return Path(args.output)
    if args.remote_path in WHOLE_SHARE:
        raise UsageError(
            f"{args.remote_path or repr('')} is the hub's whole share: say which directory to fetch it into "
            "with -o DIR/ (e.g. -o ./share/)"
        )
    return Path(args.remote_path.rstrip("/").rsplit("/", 1)[-1])


def check_parents(directory: Path, args: argparse.Namespace, *, named: bool) -> None:
    """A fetch creates at most the last directory the user named as one (``-o new/``, or a
    directory fetch's ``-o new``), and only where its parent exists; never the directories
    above it, nor the directory of a file (``-o missing/x.txt``), unless ``--parents``
    (``mkdir`` vs ``mkdir -p``)."""
    if args.parents or directory.is_dir():
        return
    missing = (directory.parent if str(directory.parent) else Path(".")) if named else directory
    if not missing.is_dir():
        raise UsageError(
            f"{missing} does not exist, so {args.output} cannot be written there: create it first, "
            "or add --parents to create it"
        )


def kept_to_resume(args: argparse.Namespace) -> str | None:
    """What a failed fetch kept that running it again resumes from (``'a.bin.part' (1.5 MiB)``),
    or None when it kept nothing (nothing was received, or the output was not decided yet)."""
    try:
        if is_directory_fetch(args):
            parts = [p for p in directory_target(args).rglob("*.part") if p.is_file() and p.stat().st_size]
            if not parts:
                return None
            held = format_size(sum(p.stat().st_size for p in parts))
            return f"the {len(parts)} partial file(s) it kept ({held})"
        part = file_target(args)
        part = part.with_name(part.name + ".part")
        size = part.stat().st_size if part.is_file() else 0
    except (OSError, ValueError, UsageError):
        return None
    return f"{printable(str(part))} ({format_size(size)} received)" if size else None


def check_inbox(args: argparse.Namespace) -> None:
    """An inbox inside ROOT (or ROOT inside the inbox) would serve every upload to everyone:
    refused unless ``--inbox-public`` says that is the point."""
    if args.inbox is None or args.inbox_public:
        return
    root, inbox = Path(args.root).resolve(), Path(args.inbox).resolve()
    if inbox.is_relative_to(root) or root.is_relative_to(inbox):
        where = "inside ROOT" if inbox.is_relative_to(root) else "around ROOT (ROOT is inside it)"
        raise UsageError(
            f"--inbox {args.inbox} is {where}, so every upload would be listed and served to everyone who "
            f"reaches this hub: choose an inbox outside {args.root} (by default it is {root.name}.inbox beside "
            "it), or add --inbox-public if that is what you want"
        )
