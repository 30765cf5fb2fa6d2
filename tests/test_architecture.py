"""The import graph shows the architecture: layers only import layers below them, and no
module imports itself back through others (docs/architecture.md).

Every import counts, wherever it is written: at module level, inside a function, or under
``TYPE_CHECKING`` (a type-only import is still a dependency a reader must follow).
"""

from __future__ import annotations

import ast
from pathlib import Path

import rxchannel

PACKAGE = Path(rxchannel.__file__).parent

#: Bottom to top. A module may import its own layer and the layers before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("rxchannel.core",)),
    ("transports", ("rxchannel.transports",)),
    ("webrtc", ("rxchannel.webrtc",)),
    ("runtime", ("rxchannel.runtime", "rxchannel.testing")),
    ("files", ("rxchannel.files",)),
    ("pipes", ("rxchannel.pipes",)),
    ("fanout", ("rxchannel.fanout",)),
    ("web", ("rxchannel.web",)),
    ("hub", ("rxchannel.hub",)),
    ("reactive", ("rxchannel.reactive",)),
    ("operators", ("rxchannel.operators",)),
    ("aio", ("rxchannel.aio", "rxchannel.aiostream")),
    ("nats", ("rxchannel.nats",)),
    ("testing", ("rxchannel.testing.tck",)),  # checks anything below it, so it sits above them all
    ("cli", ("rxchannel.cli", "rxchannel.__main__")),
    ("package", ("rxchannel",)),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    if module == "rxchannel":
        return len(LAYERS) - 1  # the package root re-exports (lazily) from every layer
    matches = [
        (len(p), index)
        for index, (_, prefixes) in enumerate(LAYERS[:-1])
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    if matches:
        return max(matches)[1]  # the longest prefix: rxchannel.testing.tck is not rxchannel.testing's layer
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md")


def imports_of(path: Path) -> set[str]:
    """The rxchannel modules ``path`` imports (resolved relative imports included)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from . import x" / "from .pkg import mod": the names may be modules too
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists():
                    found.add(candidate)
    return {m for m in found if m == "rxchannel" or m.startswith("rxchannel.")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target in imports_of(path):
            # an import of a name from a package is an edge to the package's __init__
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    ]
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_module_belongs_to_a_layer() -> None:
    for module in graph():
        layer_of(module)


def test_the_checks_see_real_edges() -> None:
    """Guard against a vacuous pass: the graph has the edges everyone knows are there."""
    edges = graph()
    assert "rxchannel.core" in edges["rxchannel.runtime.peer"]
    assert "rxchannel.runtime.router" in edges["rxchannel.runtime.peer"]
    assert "rxchannel.core._credit" in edges["rxchannel.core._policies"]
    assert layer_of("rxchannel.cli.commands") > layer_of("rxchannel.hub._hub") > layer_of("rxchannel.core._frames")


#: Rules the layer order alone does not say: (who, never imports, why).
NEVER: list[tuple[str, str, str]] = [
    ("rxchannel.transports", "rxchannel.webrtc", "frame pipes know no signaling service"),
    ("rxchannel.runtime", "rxchannel.fanout", "runtime is one connection; serving many peers is a room above"),
    ("rxchannel.runtime", "rxchannel.hub", "runtime is one connection; the file-sharing application is above"),
    ("rxchannel.files", "rxchannel.hub", "files are sources and sinks any application may use"),
    ("rxchannel.fanout", "rxchannel.hub", "fan-out patterns serve any application"),
    ("rxchannel.core", "rxchannel.transports", "the core is sans-IO"),
]
#: Facades: each is complete on its own and none imports another (conversions to and from
#: ReactiveX are the Rx facade's: rxchannel.reactive.to_async_iterable / from_async_iterable).
FACADES: dict[str, tuple[str, ...]] = {
    "rx": ("rxchannel.reactive", "rxchannel.operators"),
    "aio": ("rxchannel.aio",),
    "aiostream": ("rxchannel.aiostream",),
}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_never_rules_hold() -> None:
    broken = [
        f"{source} imports {target}: {why}"
        for source, targets in graph().items()
        for target in targets
        for who, never, why in NEVER
        if _within(source, who) and _within(target, never)
    ]
    assert broken == [], "\n".join(broken)


def test_facades_never_import_each_other() -> None:
    def facade_of(module: str) -> str | None:
        return next((name for name, prefixes in FACADES.items() if any(_within(module, p) for p in prefixes)), None)

    crossing = [
        f"{source} ({facade_of(source)}) imports {target} ({facade_of(target)})"
        for source, targets in graph().items()
        for target in targets
        if facade_of(source) and facade_of(target) and facade_of(source) != facade_of(target)
    ]
    assert crossing == [], "\n".join(crossing)


def code_lines(path: Path) -> int:
    """Lines of code in ``path``: docstrings, comments and blank lines not counted."""
    import io
    import tokenize

    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            value = getattr(first, "value", None)
            if isinstance(first, ast.Expr) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


#: The one module allowed past the bound: every frame type's layout, in the spec's order.
BIG_ON_PURPOSE = {"rxchannel.core._frames"}
MAX_CODE_LINES = 400


def size_report() -> dict[str, tuple[int, int, str]]:
    """Per package: (modules, code lines, its largest module)."""
    report: dict[str, tuple[int, int, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        count, total, largest = report.get(package, (0, 0, ""))
        lines = code_lines(path)
        if not largest or lines > int(largest.rpartition(" ")[2]):
            largest = f"{module} {lines}"
        report[package] = (count + 1, total + lines, largest)
    return report


def test_no_module_is_over_the_size_bound(capsys: object) -> None:
    """No module over 400 code lines (the frame codec aside); the per-package report is printed
    (``pytest -s tests/test_architecture.py -k size``)."""
    for package, (count, total, largest) in sorted(size_report().items()):
        print(f"{package:32} {count:3} modules {total:6} code lines   largest: {largest}")
    over = [
        f"{module_name(path)}: {code_lines(path)} code lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        if module_name(path) not in BIG_ON_PURPOSE and code_lines(path) > MAX_CODE_LINES
    ]
    assert over == [], "split these by what they hold:\n" + "\n".join(over)
    assert code_lines(PACKAGE / "core" / "_frames.py") > 100  # the counter counts


def test_code_and_docs_cite_only_what_is_in_the_repository() -> None:
    """Comments and docstrings cite the RSocket spec, the Reactive Streams spec, or the
    project's own docs/: never design notes that live outside the repository."""
    root = PACKAGE.parent
    outside = ("DESIGN.md", "STYLE.md")
    cited = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("rxchannel", "tests", "benchmarks", "examples", "docs", "web")
        if (root / folder).exists()
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
        and path.suffix in (".py", ".js", ".mjs", ".md", ".html", ".css")
        and path.name != "test_architecture.py"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if any(name in line for name in outside)
    ]
    cited += [
        f"README.md:{n}"
        for n, line in enumerate((root / "README.md").read_text().splitlines(), 1)
        if any(x in line for x in outside)
    ]
    assert cited == [], "cite docs/ or the specs instead:\n" + "\n".join(cited)


def test_citations_of_the_projects_docs_resolve() -> None:
    """A comment or docstring that cites a doc of the project and a section in quotes names
    a file and a heading that are there (a reader who follows it lands somewhere); every
    ``docs/*.md`` named anywhere exists."""
    import re

    root = PACKAGE.parent
    cite = re.compile(r'docs/([\w.-]+\.md)(?:,|\s*\()\s*"([^"]+)"')
    broken = []
    found = 0
    for folder in ("rxchannel", "tests"):
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".js", ".mjs"):
                continue
            text = " ".join(path.read_text(errors="replace").split())  # a citation may wrap
            for doc, section in cite.findall(text):
                found += 1
                target = root / "docs" / doc
                headings = (
                    [line.lstrip("#").strip() for line in target.read_text().splitlines() if line.startswith("#")]
                    if target.exists()
                    else []
                )
                if not any(section.strip().rstrip(".") in heading for heading in headings):
                    broken.append(f"{path.relative_to(root)}: docs/{doc}, {section!r}")
    named = re.compile(r"docs/([\w.-]+\.md)")
    for folder in ("rxchannel", "tests", "benchmarks", "examples"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".js", ".mjs"):
                for doc in named.findall(path.read_text(errors="replace")):
                    if not (root / "docs" / doc).exists():
                        broken.append(f"{path.relative_to(root)}: docs/{doc} is not there")
    assert broken == [], "\n".join(broken)
    assert found > 10  # the pattern finds the citations that are there
