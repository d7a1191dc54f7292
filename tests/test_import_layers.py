"""The package's rooms and the order they stand in: no module imports from a room above its own,
no two rooms of one layer import each other, and no import cycle, anywhere (issue 23).

Every `import` and `from ... import` of every module under qvq_ray/ counts: at module level,
inside functions (the lazy imports that keep `qvq-ray --help` fast are still dependencies), and
under `if TYPE_CHECKING:`. Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`, so
those packages count as imported too (for cycles). Plain `ast`, no dependency: the rooms and
their order are declared below, and a module in no room is itself a failure (a new module says
where it stands).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "qvq_ray"

#: Bottom to top. Each layer: its name and its rooms (a module, or a package with all it holds).
#: A module may import from its own room and from rooms of lower layers; rooms of one layer are
#: independent of each other.
LAYERS: list[tuple[str, list[str]]] = [
    ("floor", [
        "qvq_ray",  # the package itself: __version__ and lazy re-exports, imports nothing
        "qvq_ray.arrow_rows", "qvq_ray.cluster", "qvq_ray.console", "qvq_ray.image_ref",
        "qvq_ray.import_paths", "qvq_ray.issues", "qvq_ray.json_lines", "qvq_ray.prompt_presets",
        "qvq_ray.stderr_filter",
    ]),
    ("floor helpers", ["qvq_ray.image_files", "qvq_ray.prompt_config"]),
    ("config", ["qvq_ray.config"]),
    ("verify", ["qvq_ray.verify"]),
    ("records", ["qvq_ray.images", "qvq_ray.problem"]),
    ("prompt, models, problem sets, result files", [
        "qvq_ray.datasets", "qvq_ray.models", "qvq_ray.prompt", "qvq_ray.results",
    ]),
    ("engines", ["qvq_ray.engines"]),
    ("judge, policies", ["qvq_ray.judge", "qvq_ray.policies"]),
    ("solver", ["qvq_ray.solver"]),
    ("front ends", ["qvq_ray.batch", "qvq_ray.report", "qvq_ray.serve"]),
    ("jobs", ["qvq_ray.jobs"]),
    ("cli", ["qvq_ray.cli"]),
]


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py under the package (a package's own name for its __init__)."""
    base = package.parent
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is one of our modules (an attribute imported from it)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """Every import of our own modules in one file, wherever in the file it stands."""
    top = next(iter(modules)).split(".")[0]
    is_package = path.name == "__init__.py"
    edges = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the module pkg.sub; `from mod import name`, mod
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names]
        for target in targets:
            if target.split(".")[0] != top:
                continue
            known = _known(target, modules)
            if known is None:
                raise AssertionError(f"{name} (line {node.lineno}) imports {target}, which is no module of {top}")
            edge = Edge(name, known, node.lineno)
            if edge not in edges:  # `from mod import a, b` is one import of mod
                edges.append(edge)
    return edges


def room_of(module: str, layers: list[tuple[str, list[str]]] = LAYERS) -> tuple[int, str] | None:
    """(layer index, room) of a module: the room that names it or its closest package."""
    best: tuple[int, str] | None = None
    for index, (_, rooms) in enumerate(layers):
        for room in rooms:
            inside = module == room or (room != "qvq_ray" and module.startswith(room + "."))
            if inside and (best is None or len(room) > len(best[1])):
                best = (index, room)
    return best


def layering_errors(edges: list[Edge], modules: dict[str, Path], layers: list[tuple[str, list[str]]] = LAYERS) -> list[str]:
    errors = [f"{m} is in no room of LAYERS: declare where it stands" for m in modules if room_of(m, layers) is None]
    for edge in edges:
        have, want = room_of(edge.importer, layers), room_of(edge.imported, layers)
        if have is None or want is None or have[1] == want[1]:
            continue
        here = f"{edge.importer} (layer {have[0]} '{layers[have[0]][0]}', line {edge.line}) imports {edge.imported}"
        if want[0] > have[0]:
            errors.append(f"{here} (layer {want[0]} '{layers[want[0]][0]}'): an upward import")
        elif want[0] == have[0]:
            errors.append(f"{here}: rooms {have[1]} and {want[1]} share layer '{layers[have[0]][0]}' and must not import each other")
    return errors


def graph(edges: list[Edge], modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> modules its imports run: the imported module and the packages above it that are
    not the importer's own (importing a.b.c runs a/__init__ and a/b/__init__ first)."""
    out: dict[str, set[str]] = {m: set() for m in modules}
    for edge in edges:
        target = edge.imported
        while target and target != edge.importer:
            if not edge.importer.startswith(target + "."):
                out[edge.importer].add(target)
            target = target.rpartition(".")[0]
            if target not in modules:
                break
    return out


def cycles(nodes: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself
    (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(nodes[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(nodes.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in nodes.get(node, ()):
                    found.append(sorted(component))
    return found


def all_edges(modules: dict[str, Path]) -> list[Edge]:
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def test_no_module_imports_from_a_higher_layer_or_a_sibling_room():
    modules = module_files()
    errors = layering_errors(all_edges(modules), modules)
    assert not errors, "\n".join(errors)


def test_no_import_cycles():
    modules = module_files()
    found = cycles(graph(all_edges(modules), modules))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_an_upward_import_a_sibling_import_and_a_cycle(tmp_path):
    """The checks themselves can fail: a made-up package with each mistake once."""
    package = tmp_path / "pkg"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("def f():\n    from pkg.high import g\n")  # lazy, still upward
    (package / "low" / "b.py").write_text("from pkg.low import a\n")
    (package / "side.py").write_text("import pkg.low.b\n")
    (package / "high.py").write_text("from .low import b\nfrom . import side\n")
    layers = [("floor", ["pkg"]), ("low", ["pkg.low", "pkg.side"]), ("high", ["pkg.high"])]
    modules = module_files(package)
    edges = all_edges(modules)
    errors = layering_errors(edges, modules, layers)
    assert any("pkg.low.a (layer 1 'low', line 2) imports pkg.high (layer 2 'high'): an upward import" in e for e in errors)
    assert any("pkg.side" in e and "share layer 'low'" in e for e in errors)
    assert cycles(graph(edges, modules)) == [["pkg.high", "pkg.low.a", "pkg.low.b", "pkg.side"]]
