"""The layering rule (README, "Architecture"), read from the source: every import in src/cinegen, including those
inside functions, is an edge between two files.

- Every file sits in one layer (LAYERS) and imports only from its own layer or lower ones.
- The inference path (config, runtime, geometry, requests, defaults, io, models, diffusion, pipeline, modes,
  backends, server, studio) reaches nothing in `training/`, `data/` or `toyworld/`, directly or through another file.
- The training side (training, data, toyworld) never reaches the entry points (cli, server, studio, eval).
- No import cycles between files anywhere.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "cinegen"
INFERENCE = ("cinegen.config", "cinegen.runtime", "cinegen.geometry", "cinegen.requests", "cinegen.defaults",
             "cinegen.io", "cinegen.models", "cinegen.diffusion", "cinegen.pipeline", "cinegen.modes",
             "cinegen.backends", "cinegen.server", "cinegen.studio", "cinegen.vocabulary")
TRAINING_SIDE = ("cinegen.training", "cinegen.data", "cinegen.toyworld")
ENTRY_POINTS = ("cinegen.cli", "cinegen.cli_models", "cinegen.commands", "cinegen.server", "cinegen.studio",
               "cinegen.eval")
LAYERS = {                     # low to high; a new file must be placed here
    "base": ("cinegen", "cinegen.config", "cinegen.defaults", "cinegen.runtime", "cinegen.extras"),
    "io": ("cinegen.io",),
    "models and maths": ("cinegen.models", "cinegen.diffusion", "cinegen.parallel"),
    "pipeline": ("cinegen.geometry", "cinegen.requests", "cinegen.pipeline", "cinegen.modes", "cinegen.estimate",
                 "cinegen.vocabulary"),
    "backends": ("cinegen.backends",),
    "training side": TRAINING_SIDE,
    "entry points": ENTRY_POINTS,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(target: str, modules: dict) -> str | None:
    """The file a dotted import lands in: `cinegen.io.files.atomic_write` -> `cinegen.io.files`."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                if t.startswith("cinegen"):
                    hit = _resolve(t, modules)
                    if hit and hit != name:
                        edges.add(hit)
        graph[name] = edges
    return graph


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _reach(graph: dict, start: str) -> dict[str, list[str]]:
    """Every file reachable from `start`, with one import chain leading to it."""
    seen = {start: [start]}
    todo = [start]
    while todo:
        cur = todo.pop()
        for nxt in sorted(graph.get(cur, ())):
            if nxt not in seen:
                seen[nxt] = seen[cur] + [nxt]
                todo.append(nxt)
    return seen


def _violations(graph: dict, sources, forbidden) -> list[str]:
    bad = []
    for mod in sorted(graph):
        if _under(mod, sources):
            for hit, chain in _reach(graph, mod).items():
                if _under(hit, forbidden) and not _under(hit, sources):
                    bad.append(" -> ".join(chain))
    return bad


def _cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "cinegen.pipeline" in graph and "cinegen.models.dit" in graph["cinegen.pipeline"]
    assert graph["cinegen.cli"], "the CLI's imports sit inside its commands: they must be found there"


def _layer(module: str) -> int:
    """The rank of the layer whose longest prefix names `module`."""
    best = max(((len(p), rank) for rank, prefixes in enumerate(LAYERS.values()) for p in prefixes
                if module == p or module.startswith(p + ".") and p != "cinegen"), default=None)
    if best is None and module == "cinegen":
        return 0
    assert best is not None, f"{module} is in no layer of tests/test_layers.py LAYERS: place it"
    return best[1]


def test_every_import_goes_to_the_same_layer_or_lower():
    names = list(LAYERS)
    graph = import_graph()
    bad = [f"{a} ({names[_layer(a)]}) -> {b} ({names[_layer(b)]})"
           for a, targets in sorted(graph.items()) for b in sorted(targets) if _layer(b) > _layer(a)]
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_inference_path_reaches_no_training_or_data_code():
    bad = _violations(import_graph(), INFERENCE, TRAINING_SIDE)
    assert not bad, "inference imports training/data code:\n" + "\n".join(bad)


def test_training_side_reaches_no_entry_point():
    bad = _violations(import_graph(), TRAINING_SIDE, ENTRY_POINTS)
    assert not bad, "training/data code imports an entry point:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles between files: " + "; ".join(" <-> ".join(c) for c in cycles)
