"""The packages import one way only (README, Layout): common <- model, extractors <- pipeline <-
flows <- cli; inside pipeline/, the rooms too: features <- corpora <- models <- training, scoring.
Every import is checked, function-level ones included."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
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


#: the rooms of pipeline/ and what each may import of the others (DESIGN: arrows only go down)
ROOMS = ("features", "corpora", "models", "training", "scoring")
ROOM_ALLOWED = {
    "features": set(),
    "corpora": {"features"},
    "models": {"features", "corpora"},
    "training": {"features", "corpora", "models"},
    "scoring": {"features", "corpora", "models"},
}


def _imports(path: Path, depth: int = 1) -> list[tuple[int, str]]:
    """(line, the first ``depth`` parts of the imported module) of every absolute import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, ".".join(a.name.split(".")[:depth])) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if len(parts) >= depth:
                out.append((node.lineno, ".".join(parts[:depth])))
            else:  # ``from pipeline import report``: the names may be modules
                out += [(node.lineno, ".".join([*parts, a.name][:depth])) for a in node.names]
    return out


def test_no_package_imports_one_above_it():
    wrong = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for line, top in _imports(f):
                if top in PACKAGES and top != pkg and top not in ALLOWED[pkg]:
                    wrong.append(f"{f.relative_to(ROOT)}:{line} imports {top}")
    assert not wrong, "imports against the one-way flow:\n" + "\n".join(wrong)


def test_the_rooms_of_pipeline_import_one_way():
    loose = sorted(p.name for p in (ROOT / "pipeline").glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules of pipeline/ outside a room: {loose}"
    wrong = []
    for room in ROOMS:
        for f in sorted((ROOT / "pipeline" / room).rglob("*.py")):
            for line, mod in _imports(f, depth=2):
                other = mod.split(".")[1] if mod.startswith("pipeline.") else None
                if other is not None and other != room and other not in ROOM_ALLOWED[room]:
                    wrong.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not wrong, "imports against the rooms' one-way flow:\n" + "\n".join(wrong)


def test_feature_extraction_and_corpora_import_no_torch():
    """Extracting features needs no model: the whole features room, and the corpora room that
    reads label files and pickles, load without torch (a fresh interpreter)."""
    probe = ("import sys, json, pkgutil, importlib\n"
             "import pipeline.features, pipeline.corpora\n"
             "for pkg in (pipeline.features, pipeline.corpora):\n"
             "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
             "        importlib.import_module(m.name)\n"
             "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'transformers'))))\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_the_check_sees_function_level_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from flows.stack import LocalStack\n    import pipeline.training.trainer\n")
    assert _imports(f) == [(2, "flows"), (3, "pipeline")]


def test_the_rooms_check_sees_a_room_imported_by_name(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from pipeline import training\nfrom pipeline.scoring.score import score_videos\n")
    assert _imports(f, depth=2) == [(1, "pipeline.training"), (2, "pipeline.scoring")]


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
