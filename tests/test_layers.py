"""The import contract: lowformer_common < search_spaces < measured < predictors < nas.

A module may import its own package and the packages below it, by their public names only (no
``other_package._private``), and no chain of imports (module-level or inside functions) may lead back to
where it started. Imports under ``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("lowformer_common", "search_spaces", "measured", "predictors", "nas")
RANK = {p: i for i, p in enumerate(LAYERS)}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for pkg in LAYERS for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _sources()


def _imports(name: str, path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a project module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for stmt in node.body for n in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from . import _x` imports the module _x; `from .m import name` imports m.
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
        else:
            continue
        out += [(node.lineno, t) for t in targets if t.split(".")[0] in RANK]
    return out


def _resolve(target: str) -> str:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def test_no_reverse_imports():
    bad = [f"{path.relative_to(ROOT)}:{line} imports {t}"
           for name, path in MODULES.items() for line, t in _imports(name, path)
           if RANK[t.split(".")[0]] > RANK[name.split(".")[0]]]
    assert not bad, "a package imports one above it:\n" + "\n".join(bad)


def test_no_private_cross_package_imports():
    bad = [f"{path.relative_to(ROOT)}:{line} imports {t}"
           for name, path in MODULES.items() for line, t in _imports(name, path)
           if t.split(".")[0] != name.split(".")[0]
           and any(part.startswith("_") and not part.startswith("__") for part in t.split(".")[1:])]
    assert not bad, "use the other package's public names:\n" + "\n".join(bad)


def test_no_import_cycles():
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    for name, path in MODULES.items():
        for _, t in _imports(name, path):
            target = _resolve(t)
            if target and target != name:
                g.add_edge(name, target)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("package", LAYERS)
def test_every_public_name_resolves(package):
    import importlib

    mod = importlib.import_module(package)
    torch_free = {"build_model", "check_against_graph", "randomize_", "set_drop_path", "export_onnx", "ConvLayer",
                  "MBConv", "FusedMBConv", "Lowtention", "MHSA"}
    missing = []
    for n in mod.__all__:
        if n in torch_free:
            continue
        try:
            getattr(mod, n)
        except (AttributeError, ModuleNotFoundError):
            missing.append(n)
    assert not missing, f"{package}.__all__ names that do not resolve: {missing}"


@pytest.mark.parametrize("package", ["predictors", "measured", "nas.search"])
def test_public_faces_list_what_users_need(package):
    # __all__ is the user's API (a few dozen names, each once); the package imports more for this project's other
    # packages, which may use only package-level names (see the import contract above).
    import importlib

    names = importlib.import_module(package).__all__
    assert len(names) == len(set(names)) <= 35, (package, len(names))
