"""The shape of the source tree: no import circle among the three packages' modules (every import counts:
top-level, inside functions, under TYPE_CHECKING), and no module over 500 lines. Both checks read the files
with `ast` only (nothing is imported), so they are fast and name the modules at fault."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def modules(root: Path = REPO) -> dict[str, Path]:
    """{dotted module name: file} of every module under packages/*/src (a package is its __init__)."""
    out = {}
    for src in sorted(root.glob("packages/*/src")):
        for f in sorted(src.rglob("*.py")):
            parts = list(f.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the project modules it imports}; ``from a import b`` names ``a.b`` when that is a module,
    else ``a``; relative imports are resolved against the importing module."""

    def resolve(name: str, current: str, level: int, is_pkg: bool) -> str | None:
        if level:
            base = current.split(".") if is_pkg else current.split(".")[:-1]
            base = base[: len(base) - (level - 1)] if level > 1 else base
            name = ".".join(base + ([name] if name else []))
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [resolve(a.name, m, 0, is_pkg) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                for a in node.names:
                    full = resolve(f"{base}.{a.name}" if base else a.name, m, node.level, is_pkg)
                    targets.append(full or resolve(base, m, node.level, is_pkg))
            edges[m].update(t for t in targets if t and t != m)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_three_packages_are_all_seen() -> None:
    tops = {m.split(".")[0] for m in modules()}
    assert tops == {"kb_expand", "catmner_model", "catmner_bench"}


def test_no_import_cycle() -> None:
    found = cycles(import_graph(modules()))
    assert not found, "import cycles:\n" + "\n".join(", ".join(c) for c in found)


@pytest.mark.parametrize("path", sorted(modules().values()), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_over_500_lines(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, (
        f"{path.relative_to(REPO)}: {n} lines (split it by responsibility, at most {MAX_LINES})"
    )


def test_the_cycle_check_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    src = tmp_path / "packages" / "demo" / "src" / "demo"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("def f():\n    from demo.b import g\n")
    (src / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n")
    (src / "c.py").write_text("import demo.a\n")
    (src / "d.py").write_text("from demo import a\n")  # imports a, not part of the circle
    mods = modules(tmp_path)
    assert cycles(import_graph(mods)) == [["demo.a", "demo.b", "demo.c"]]
    (src / "c.py").write_text("import os\n")
    assert cycles(import_graph(modules(tmp_path))) == []


# the planner: what plans, trains and runs benchmark runs, and how their recipes resolve
PLANNER = {
    f"catmner_bench.{m}"
    for m in ("systems", "experiments", "profiles", "runner", "sweep", "baselines", "ray_executor", "recipes")
}
# what renders or judges run records: it reads the records' stored facts (records.Recipe), never the planner
REPORT = ("catmner_bench.report", "catmner_bench.verdicts", "catmner_bench.claims", "catmner_bench.decisive")
REPORT += ("catmner_bench.stats", "catmner_bench.outcomes", "catmner_bench.paper", "catmner_bench.catalog")


def reaches(edges: dict[str, set[str]], start: str) -> dict[str, str]:
    """{module: the module that imports it} of every module ``start`` imports, directly or not; importing a
    module imports the packages above it too (``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``)."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        m = todo.pop()
        parts = m.split(".")
        for t in edges.get(m, set()) | {".".join(parts[:i]) for i in range(1, len(parts))}:
            if t in edges and t not in seen and t != start:
                seen[t] = m
                todo.append(t)
    return seen


def test_no_report_module_imports_the_planner() -> None:
    """Every import counts (top-level, in functions, under TYPE_CHECKING), and so do the imports of what is
    imported: a report module that reaches the planner through another module is named with that chain."""
    edges = import_graph(modules())
    report = [m for m in edges if m.startswith(REPORT)]
    assert "catmner_bench.report.tables" in report and "catmner_bench.report.speed" in report
    bad = []
    for m in sorted(report):
        seen = reaches(edges, m)
        for p in sorted(PLANNER & set(seen)):
            chain = [p]
            while chain[-1] in seen:
                chain.append(seen[chain[-1]])
            bad.append(" <- ".join(chain))
    assert not bad, "report modules that import the planner:\n" + "\n".join(bad)


def test_the_planner_check_sees_chains_and_parent_packages() -> None:
    edges = {"r": {"x"}, "x": set(), "p": set(), "pkg": {"p"}, "pkg.m": set(), "q": {"pkg.m"}}
    assert set(reaches(edges, "r")) == {"x"} and set(reaches(edges, "q")) == {"pkg.m", "pkg", "p"}
