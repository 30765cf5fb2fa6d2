"""Every ```python block of README.md runs as written (issue 14, "Docs that run").

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

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```")
HEADING = re.compile(r"^#{1,6} +(.+?) *$")
#: what a clean run never prints on stderr (matched without regard to case)
COMPLAINTS = ("Traceback", "Task was destroyed", "never awaited", "Unclosed", "Exception ignored")


@dataclass(frozen=True)
class Block:
    id: str
    line: int
    code: str


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


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks() -> None:
    assert BLOCKS, "README.md has no ```python block (or the fence pattern no longer finds them)"


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
    where = f"README.md line {block.line}"
    assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stderr}"
    assert done.stdout.strip(), f"{where} printed nothing"
    found = [word for word in COMPLAINTS if word.lower() in done.stderr.lower()]
    assert not found, f"{where} wrote {found} on stderr:\n{done.stderr}"
