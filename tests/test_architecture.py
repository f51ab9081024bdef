"""The shape of src/facetrail, checked from its source (every import counts: top-level, inside functions and
under TYPE_CHECKING), so that the direction of dependencies cannot erode one convenient import at a time.

- no import cycle between the packages of facetrail (faces, gallery, cases, ...), nor between its modules;
- no package imports another package's private names (``from facetrail.x.y import _name``).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "facetrail"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> list[tuple[str, str, list[str], int]]:
    """(importing module, imported module, names imported from it, line) for every facetrail import."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [alias.name for alias in node.names]
                # `from facetrail.gallery import service` imports the module facetrail.gallery.service
                modules = [target] + [f"{target}.{n}" for n in names if _is_module(f"{target}.{n}")]
                found += [(module, m, names, node.lineno) for m in modules]
            elif isinstance(node, ast.Import):
                found += [(module, alias.name, [], node.lineno) for alias in node.names]
    return [f for f in found if f[1] == "facetrail" or f[1].startswith("facetrail.")]


def _is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _package(module: str) -> str:
    """The top-level part a module belongs to: facetrail.gallery.search -> gallery; facetrail.errors -> errors."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _edges_between(key: object) -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    edges: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, target, _names, line in _imports():
        a, b = key(source), key(target)  # type: ignore[operator]
        if a != b and target != "facetrail":
            edges[a].add(b)
            where[(a, b)].append(f"{source}:{line} -> {target}")
    return edges, where


def _explain(cycles: list[list[str]], where: dict[tuple[str, str], list[str]]) -> str:
    lines = []
    for members in cycles:
        lines.append("cycle: " + ", ".join(members))
        for a in members:
            for b in members:
                lines += [f"    {w}" for w in where.get((a, b), [])]
    return "\n".join(lines)


def test_the_scan_sees_imports() -> None:
    """The checks below are only as good as the scan: it must find the imports known to exist."""
    found = {(s, t) for s, t, _n, _l in _imports()}
    assert ("facetrail.cases.searches", "facetrail.gallery.search") in found
    assert ("facetrail.gallery.service", "facetrail.errors") in found
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_packages() -> None:
    edges, where = _edges_between(_package)
    cycles = _cycles(edges)
    assert not cycles, "import cycles between packages of facetrail:\n" + _explain(cycles, where)


def test_no_import_cycle_between_modules() -> None:
    edges, where = _edges_between(lambda m: m)
    # A package's __init__ re-exporting its own modules is not a dependency of those modules on it.
    for (a, b), _w in list(where.items()):
        if b != a and a.startswith(b + "."):
            edges[a].discard(b)
    cycles = _cycles(edges)
    assert not cycles, "import cycles between modules of facetrail:\n" + _explain(cycles, where)


def test_no_private_names_across_packages() -> None:
    crossings = [
        f"{source}:{line} imports {[n for n in names if n.startswith('_')]} from {target}"
        for source, target, names, line in _imports()
        if _package(source) != _package(target) and any(n.startswith("_") and not n.startswith("__") for n in names)
    ]
    assert not crossings, "\n".join(crossings)


@pytest.mark.parametrize("package", ["faces", "index", "storage", "policy", "errors", "config"])
def test_inner_parts_import_no_outer_part(package: str) -> None:
    """The innermost parts never reach up to the doors (service, web, cli) or to the case work."""
    outer = {"service", "web", "cli", "cases", "governance", "retention", "reports", "gallery", "accounts", "audit"}
    edges, where = _edges_between(_package)
    reached = edges.get(package, set()) & outer
    assert not reached, "\n".join(w for b in reached for w in where[(package, b)])


def test_http_status_is_carried_by_the_error_classes() -> None:
    """One mapping: the class hierarchy. An error whose code says "not found" answers 404 unless its class
    names another status itself (e.g. a case number the records system does not know refuses a search: 422)."""
    import importlib
    import pkgutil

    import facetrail
    from facetrail.errors import FaceTrailError

    skip = ("facetrail.evaluation", "facetrail.storage.migrations")
    for info in pkgutil.walk_packages(facetrail.__path__, "facetrail."):
        if not info.name.startswith(skip):
            importlib.import_module(info.name)
    classes: list[type[FaceTrailError]] = []
    pending: list[type[FaceTrailError]] = [FaceTrailError]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending += cls.__subclasses__()
    assert len(classes) > 30
    for cls in classes:
        assert 400 <= cls.http_status <= 599, cls
        if cls.code.endswith("not_found") and "http_status" not in vars(cls):
            assert cls.http_status == 404, f"{cls.__module__}.{cls.__name__} ({cls.code}) answers {cls.http_status}"
