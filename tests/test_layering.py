"""The packages import one way only (README, Layout): common <- model, extractors <- pipeline <-
flows <- cli. Every import is checked, function-level ones included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "model", "extractors", "pipeline", "flows", "cli")

#: what each package may import of the project
ALLOWED = {
    "common": set(),
    "model": set(),
    "extractors": {"common"},
    "pipeline": {"common", "model", "extractors"},
    "flows": {"common", "model", "extractors", "pipeline"},
    "cli": {"common", "model", "extractors", "pipeline", "flows"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def test_no_package_imports_one_above_it():
    wrong = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for line, top in _imports(f):
                if top in PACKAGES and top != pkg and top not in ALLOWED[pkg]:
                    wrong.append(f"{f.relative_to(ROOT)}:{line} imports {top}")
    assert not wrong, "imports against the one-way flow:\n" + "\n".join(wrong)


def test_the_check_sees_function_level_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from flows.stack import LocalStack\n    import pipeline.train\n")
    assert _imports(f) == [(2, "flows"), (3, "pipeline")]


def test_every_project_import_of_the_bench_and_flow_scripts_resolves():
    """Benchmarks import lazily inside their functions, so a moved module breaks them only when
    they run: check every ``from <project module> import name`` of bench/ and flows/ now."""
    import importlib

    missing = []
    for f in sorted([*(ROOT / "bench").glob("*.py"), *(ROOT / "flows").glob("*.py"), *(ROOT / "cli").glob("*.py")]):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] in PACKAGES:
                try:
                    mod = importlib.import_module(node.module)
                except ImportError as exc:
                    missing.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.module} ({exc})")
                    continue
                for alias in node.names:
                    if not hasattr(mod, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}")
    assert not missing, "imports that do not resolve:\n" + "\n".join(missing)
