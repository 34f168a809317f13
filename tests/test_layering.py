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
