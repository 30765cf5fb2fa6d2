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
