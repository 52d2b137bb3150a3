"""The layout is the architecture: facegan's subpackages import downwards only, and no module imports
itself back through others.

Every module under facegan/ is parsed (not imported) and every Import / ImportFrom node counts,
wherever it is: at module level, inside a function, under `if TYPE_CHECKING:`; relative imports are
resolved. An import of facegan.a.b also runs the package facegan/a/__init__.py, so for the cycle check
it is an edge to that package too (from outside it); the root package facegan/__init__.py is the one
exception, since every import runs it and it imports the API only on attribute access (PEP 562), so an
explicit `import facegan` / `from facegan import load` counts and the implicit one does not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facegan"

# The layers, lowest first: a unit (a subpackage, or a module at facegan/'s top level; "facegan" is the
# root package's __init__) may import itself and the units before it, never one after it.
LAYERS = (
    "presets",  # data (the preset YAML files): imports nothing
    "pretrained_models",  # data (the shipped generators): imports nothing
    "errors",  # FaceganError: the one-line errors every layer raises
    "registry",  # Registry: named entries of one kind (architectures, losses)
    "version",  # __version__, stamped into checkpoints and exports
    "storage",  # files written atomically, handed files read defensively, model sizes from a config
    "config",  # the typed run configuration and its presets
    "runtime",  # the device and its speed settings (precision, layout, compile, inference wrapper)
    "data",  # sources, decoding, prepared datasets, batches, synthetic faces, augmentation
    "networks",  # the architectures, the EMA, checkpoints and exported generators
    "sampling",  # seeded faces, walks, GIFs, attribute edits applied to faces
    "metrics",  # FID, KID, SWD, C2ST, PRDC, ... under named protocols
    "tracking",  # run folders, stats, TensorBoard / MLflow / W&B, figures
    "training",  # the build, the step, the loop, resuming, torchrun ranks, the dry run
    "edits",  # finding and measuring attribute directions
    "sharing",  # shipped generators, the Hugging Face Hub layout, ONNX export
    "api",  # the Python API: facegan.load, Generator, facegan.export, facegan.train
    "facegan",  # the root package: re-exports the API lazily
    "serve",  # the web page and its API
    "cli",  # the `facegan` command
    "__main__",  # `python -m facegan`
)

MAX_LINES = 400  # every module, no exceptions: a longer one is split by concept
MAX_TOP_LEVEL = 8


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module under facegan/ (a package under its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _owner(dotted: str) -> str | None:
    """The longest prefix of `dotted` that is a facegan module (None outside facegan)."""
    parts = dotted.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) if parts else None


def _targets(name: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The dotted names one import statement of module `name` reaches (maybe outside facegan)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: from the module's package, up level - 1 more
        base = name.split(".") if _is_package(name) else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    for alias in node.names:  # `from pkg import mod` reaches the module; `from mod import f`, mod
        yield f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module


def imports(name: str) -> set[str]:
    """The facegan modules that module `name` imports anywhere in its source."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"), str(MODULES[name]))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(name, node):
                owner = _owner(target)
                if owner is not None and owner != name:
                    found.add(owner)
    return found


def _unit(name: str) -> str:
    """The layer unit of a module: its subpackage, or itself at the top level ("facegan": the root)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "facegan"


def _graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, plus the packages an import runs (from outside them)."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        edges = imports(name)
        for target in list(edges):
            parts = target.split(".")
            for i in range(2, len(parts)):  # facegan.a, facegan.a.b, ... (not the root, see above)
                package = ".".join(parts[:i])
                if package in MODULES and not (name + ".").startswith(package + "."):
                    edges.add(package)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {_unit(name) for name in MODULES}
    assert units <= set(LAYERS), f"place these in LAYERS: {sorted(units - set(LAYERS))}"
    assert len(set(LAYERS)) == len(LAYERS)


def test_layers_import_downwards_only() -> None:
    rank = {unit: i for i, unit in enumerate(LAYERS)}
    upward = [
        f"{name} imports {target} ({_unit(name)} is below {_unit(target)})"
        for name in MODULES
        for target in sorted(imports(name))
        if rank[_unit(target)] > rank[_unit(name)]
    ]
    assert not upward, "\n".join(upward)


def _one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth-first, inside it)."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    for v in queue:
        for w in sorted(graph[v] & inside):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return component


def test_no_import_cycles() -> None:
    graph = _graph()
    found = cycles(graph)
    lines = [f"{' -> '.join(_one_cycle(graph, c))}   (all of it: {', '.join(c)})" for c in found]
    assert not found, "import cycles:\n" + "\n".join(lines)


def test_the_cycle_check_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _one_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_few_modules_at_the_top_level() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules at facegan/'s top level: {top}"


def test_no_long_modules() -> None:
    long = [
        f"facegan/{rel} has {n} lines"
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and (rel := path.relative_to(PACKAGE).as_posix())
    ]
    assert not long, f"split these by concept (at most {MAX_LINES} lines each):\n" + "\n".join(long)
