"""Every ```python block of README.md and docs/*.md runs as written ("Docs that run"), and the
pages hold together: every relative link resolves (files and headings), nothing refers to
what a reader of the repository cannot see, one import scheme throughout, and the README
stays a page a newcomer can walk.

Each block is a whole program: it is written to a file in a temporary directory and run
there with this interpreter, as a user who pastes it would run it. It must exit 0, print
something, and leave nothing behind that Python or asyncio complains about on stderr (a
traceback, a task destroyed while pending, a coroutine never awaited, an unclosed
transport, socket or session: ResourceWarnings are shown for this).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
README = TOP / "README.md"
#: every page a reader is sent to: the README and docs/
PAGES = [README, *sorted((TOP / "docs").glob("*.md"))]
FENCE = re.compile(r"^```")
HEADING = re.compile(r"^#{1,6} +(.+?) *$")
#: what a clean run never prints on stderr (matched without regard to case)
COMPLAINTS = ("Traceback", "Task was destroyed", "never awaited", "Unclosed", "Exception ignored")


@dataclass(frozen=True)
class Block:
    id: str
    line: int
    code: str
    page: str = "README.md"


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, each named after its section and its place in it.

    Headings count only outside fences (a ``# comment`` in a block is not a section)."""
    blocks: list[Block] = []
    seen: dict[str, int] = {}
    section, start = "top", 0
    fence: str | None = None  # the info string of the open fence
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            heading = HEADING.match(line)
            if heading:
                section = heading.group(1)
            elif FENCE.match(line):
                fence, start, body = line[3:].strip(), number, []
        elif FENCE.match(line) and not line[3:].strip():
            if fence == "python":
                slug = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")
                seen[slug] = seen.get(slug, 0) + 1
                blocks.append(Block(f"{slug}-{seen[slug]}", start, "".join(body)))
            fence = None
        else:
            body.append(line + "\n")
    return blocks


def _page_blocks(page: Path) -> list[Block]:
    name = page.relative_to(TOP).as_posix()
    prefix = "" if page == README else f"{page.stem}-"
    return [Block(prefix + b.id, b.line, b.code, name) for b in python_blocks(page.read_text(encoding="utf-8"))]


BLOCKS = [block for page in PAGES for block in _page_blocks(page)]


def test_the_readme_and_the_guides_have_python_blocks() -> None:
    pages = {block.page for block in BLOCKS}
    assert {"README.md", "docs/rx.md", "docs/async.md"} <= pages, pages


def test_the_block_finder_sees_fences_and_sections() -> None:
    text = (
        "# A\n```python\nprint(1)\n```\n"
        "## B: c\n```sh\n# not a heading\n```\n"
        "```python\nprint(2)\n```\n```python\nprint(3)\n```\n"
    )
    assert [(b.id, b.code) for b in python_blocks(text)] == [
        ("a-1", "print(1)\n"),
        ("b-c-1", "print(2)\n"),
        ("b-c-2", "print(3)\n"),
    ]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = f"{block.page} line {block.line}"
    assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stderr}"
    assert done.stdout.strip(), f"{where} printed nothing"
    found = [word for word in COMPLAINTS if word.lower() in done.stderr.lower()]
    assert not found, f"{where} wrote {found} on stderr:\n{done.stderr}"


# ------------------------------------------------------------------ the pages hold together

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fence = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fence = not fence
        elif not fence and (heading := HEADING.match(line)):
            found.add(slug(heading.group(1)))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """The link targets of ``page`` outside code (fenced blocks and inline code spans)."""
    found, fence = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fence = not fence
            continue
        if not fence:
            found += [(number, target) for target in LINK.findall(re.sub(r"`[^`]*`", "", line))]
    return found


def test_the_slug_is_githubs() -> None:
    assert slug("Several processes: --processes") == "several-processes---processes"
    assert slug("The hub's log") == "the-hubs-log"
    assert slug("One file to many workers: `files/` vs `share/`") == "one-file-to-many-workers-files-vs-share"
    assert slug("--json output") == "--json-output"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(TOP).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for line, target in links(page):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ... : outside the repository, not checked here
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"line {line}: {target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"line {line}: {target} (no heading #{fragment} in {resolved.name})")
        elif not resolved.is_relative_to(TOP):
            broken.append(f"line {line}: {target} (outside the repository)")
    assert not broken, "\n".join(broken)


OUTSIDE = re.compile(r"DESIGN\.md|STYLE\.md|/work/shared|\bissues? #?\d+\b|\bissue-\d+\b", re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(TOP).as_posix() for p in PAGES])
def test_no_page_refers_to_what_a_reader_cannot_see(page: Path) -> None:
    found = [
        f"line {number}: {line.strip()[:120]}"
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "\n".join(found)


def test_one_import_scheme_that_does_not_clash_with_rx() -> None:
    """``import reactivex as rx`` is Rx's convention: rxchannel is ``rxc``, its facades go by
    their own names (``reactive``, ``aio``; aiostream's as ``rxpipe``)."""
    sources = [*PAGES, *sorted((TOP / "examples").glob("*.py"))]
    clashes = re.compile(
        r"^\s*(import rxchannel as rx\b|from rxchannel import reactive as rxc\b|import reactivex\s*$)", re.MULTILINE
    )
    found = [f"{p.relative_to(TOP)}: {m.group(0).strip()}" for p in sources for m in clashes.finditer(p.read_text())]
    assert not found, found
    readme = README.read_text(encoding="utf-8")
    assert "import reactivex as rx\n" in readme and "import rxchannel as rxc\n" in readme


def test_the_readme_is_a_page_a_newcomer_can_walk() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move detail into docs/"
    sections = [m.group(1) for m in re.finditer(r"^## (.+)$", text, re.MULTILINE)]
    assert sections[0] == "Contents", sections
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    for section in sections[1:]:
        assert f"(#{slug(section)})" in contents, f"the table of contents lacks {section!r}"
    for page in sorted((TOP / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"the README does not link docs/{page.name}"
