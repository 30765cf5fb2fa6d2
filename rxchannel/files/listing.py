"""Listing a served tree a page at a time: files in a fixed order, resumed after a cursor.

The order is by path components (``a/b`` sorts with ``a``, before ``a.txt``), so a page
after a cursor skips whole directories that sort before it without reading them: a tree
of 100,000 files costs one page, not one walk, per request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MAX_NAME_BYTES", "Page", "list_page"]

#: A routing tag holds at most 255 bytes (Routing.md): ``files/`` + the path must fit.
MAX_NAME_BYTES = 255 - len("files/")
#: Partial and set-aside files are never listed.
HIDDEN_SUFFIXES = (".part", ".corrupt")


@dataclass(slots=True)
class Page:
    """One page of a listing.

    Attributes:
        entries: ``{"path", "size"}`` in order.
        next: the cursor for the next page, or None when the listing is complete.
        skipped: names left out because they cannot be fetched, by reason.
    """

    entries: list[dict[str, object]] = field(default_factory=list)
    next: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)


def _key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def _files(root: Path, parts: tuple[str, ...], after: tuple[str, ...], prefix: str) -> Iterator[tuple[str, Path]]:
    """Files under ``root/parts`` in component order, after ``after``, whose path may start with ``prefix``."""
    try:
        with os.scandir(root.joinpath(*parts)) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    depth = len(parts)
    for entry in entries:
        here = (*parts, entry.name)
        if after and here < after[: depth + 1]:
            continue  # this whole subtree sorts before the cursor
        relative = "/".join(here)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            if prefix.startswith(relative + "/") or relative.startswith(prefix) or not prefix:
                yield from _files(root, here, after if after[: depth + 1] == here else (), prefix)
        elif here > after and relative.startswith(prefix):
            yield relative, Path(entry.path)


def _skip(page: Page, reason: str) -> None:
    page.skipped[reason] = page.skipped.get(reason, 0) + 1


def list_page(root: Path, *, prefix: str = "", cursor: str | None = None, limit: int = 1000) -> Page:
    """One page of the files under ``root`` (a blocking call: run it in a thread).

    ``cursor`` is the ``next`` of the previous page. Partial files (``.part``, ``.corrupt``)
    are not listed; names the hub cannot serve are left out and counted in ``skipped`` by
    reason: not valid UTF-8, over the routing tag's 255 bytes, a symlink leading outside
    the root, a symlink to a directory (not followed), not a regular file, unreadable.
    """
    real_root = root.resolve()
    page = Page()
    after = _key(cursor) if cursor else ()
    for relative, path in _files(root, (), after, prefix):
        if relative.endswith(HIDDEN_SUFFIXES):
            continue
        try:
            encoded = relative.encode()
        except UnicodeEncodeError:
            _skip(page, "not UTF-8")
            continue
        if len(encoded) > MAX_NAME_BYTES:
            _skip(page, "longer than a route allows")
            continue
        try:
            real = path.resolve()
            if not real.is_relative_to(real_root):
                _skip(page, "a symlink leading outside the hub's root")
                continue
            if not real.is_file():
                _skip(page, "a symlink to a directory (not followed)" if real.is_dir() else "not a regular file")
                continue
            size = real.stat().st_size
        except (OSError, RuntimeError):  # unreadable, a dangling symlink, a symlink loop
            _skip(page, "unreadable or a broken symlink")
            continue
        if len(page.entries) == limit:
            page.next = page.entries[-1]["path"]  # type: ignore[assignment]
            break
        page.entries.append({"path": relative, "size": size})
    return page
