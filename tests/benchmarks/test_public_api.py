"""The benchmarks use only catmner_model's public API: the names of ``catmner_model.__all__`` and the public
(non-underscore) names of the owning modules it declares public (``catmner_model.PUBLIC_MODULES``). Every
catmner_bench source file is parsed; an import of any other catmner_model module or name fails, naming file
and line."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import catmner_model
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH_SRC = REPO / "packages" / "benchmarks" / "src" / "catmner_bench"
SOURCES = sorted(BENCH_SRC.rglob("*.py"))


def public_names() -> dict[str, set[str]]:
    """{module: its public names}: ``catmner_model`` and each of its public facade modules."""
    out = {"catmner_model": set(catmner_model.__all__)}
    for module in catmner_model.PUBLIC_MODULES:
        out[module] = {n for n in vars(importlib.import_module(module)) if not n.startswith("_")}
    return out


def violations(path: Path, public: dict[str, set[str]]) -> list[str]:
    """'file:line: what' for every use of a non-public catmner_model module or name in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = str(path.relative_to(BENCH_SRC)) if path.is_relative_to(BENCH_SRC) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top != "catmner_model":
                continue
            if node.module not in public:
                found.append(f"{where}:{node.lineno}: from {node.module} import ... (not a public module)")
                continue
            for alias in node.names:
                if alias.name not in public[node.module]:
                    found.append(f"{where}:{node.lineno}: {node.module}.{alias.name} is not public")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "catmner_model" and alias.name not in public:
                    found.append(f"{where}:{node.lineno}: import {alias.name} (not a public module)")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "catmner_model"
            and node.attr not in public["catmner_model"]
        ):
            found.append(f"{where}:{node.lineno}: catmner_model.{node.attr} is not public")
    return found


def test_every_bench_source_is_checked() -> None:
    names = {p.name for p in SOURCES}
    assert {"runner.py", "records.py", "baselines.py", "experiments.py", "cli.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(BENCH_SRC)))
def test_bench_imports_only_public_catmner_model_names(path: Path) -> None:
    found = violations(path, public_names())
    assert not found, "catmner_bench uses catmner_model internals:\n" + "\n".join(found)


def test_public_modules_are_owning_modules() -> None:
    """No re-export shims: every module in PUBLIC_MODULES defines something (a function, class or constant
    assigned at its top level), and the removed facades are gone."""
    for module in catmner_model.PUBLIC_MODULES:
        path = importlib.import_module(module).__file__
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        defs = [
            n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign))
        ]
        assert defs, f"{module} defines nothing"
    for gone in ("modeling", "train", "vision", "scoring", "utils", "harness"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"catmner_model.{gone}")


def test_public_names_resolve() -> None:
    for module, names in public_names().items():
        mod = importlib.import_module(module)
        for name in names:
            assert getattr(mod, name) is not None, f"{module}.{name}"


def test_the_check_sees_every_import_form(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import catmner_model.model\n"
        "from catmner_model.train import run_epoch\n"
        "from catmner_model import Tweet, provenance\n"
        "from catmner_model.provenance import git_info, _private\n"
        "import catmner_model\n"
        "x = catmner_model.batching\n"
        "from catmner_model.training.loop import run_epoch as ok\n",
        encoding="utf-8",
    )
    found = violations(probe, public_names())
    assert [f.split(": ", 1)[1] for f in found] == [
        "import catmner_model.model (not a public module)",
        "from catmner_model.train import ... (not a public module)",
        "catmner_model.provenance is not public",
        "catmner_model.provenance._private is not public",
        "catmner_model.batching is not public",
    ]
