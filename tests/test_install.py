"""A plain (non-editable) install carries the named configs and the default model: `senbert train
--config quick` works from another folder, far from the source tree."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def _files(folder: Path) -> set[str]:
    return {f.relative_to(folder).as_posix() for f in folder.rglob("*") if f.is_file()}


def test_a_non_editable_install_finds_its_configs_and_default_model(tmp_path):
    # built from a copy: pip builds in the source folder, and a stale build/ there would be installed too
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in sorted({p.split(".")[0] for p in _packages()} | {"configs"}):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    # every config (configs/extract/, configs/ablations/ too) and every file of the default model
    assert _files(target / "pipeline" / "configs") >= {f for f in _files(ROOT / "configs") if f.endswith(".yaml")}
    assert _files(target / "pipeline" / "default_model") == _files(src / "pipeline" / "default_model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not the source tree
    probe = ("from common.config_files import config_dir\n"
             "from pipeline.training.config import load_config\n"
             "from pipeline.features.config import config_names, load_extract_config\n"
             "from pipeline.models.packed import default_model_dir\n"
             "import pipeline\n"
             "print(pipeline.__file__)\nprint(config_dir())\nprint(default_model_dir())\n"
             "print(load_config('quick').model.encoder, load_config('quick', ablation='sense_only').model.variant)\n"
             "print(config_names(), load_extract_config('fast').visual.fps)\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert all(line.startswith(str(target)) for line in lines[:3]), lines
    assert lines[3] == "all-MiniLM-L6-v2 sense_only"
    assert lines[4].startswith("['default', 'egemaps', 'fast', 'paper']")

    data = elsewhere / "label.csv"
    rows = ["video_id,clip_id,text,label,mode"] + [
        f"v{i},1,{'good fun' if i % 2 else 'bad and dull'} {i},{1.5 if i % 2 else -1.5},{'train' if i < 6 else 'valid'}"
        for i in range(8)]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "cli", "train", "--config", "quick", "--ablation", "language_only", "--data",
           str(data), "--out", "run", "--epochs", "1", "--quiet", "--set", "model.d_model=16",
           "--set", "max_text_len=16"]
    r = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (elsewhere / "run" / "checkpoint" / "senbert.json").is_file()
    assert "quick" in (elsewhere / "run" / "config.yaml").read_text()
    # the model release is product code: the installed copy has it (no bench/ script needed)
    probe = "from pipeline.training.release import build, combine; print(build.__file__, combine.__file__)"
    r = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count(str(target)) == 2, (r.stdout + r.stderr)[-3000:]
    r = subprocess.run([sys.executable, "-m", "cli", "release", "combine", "--help"], cwd=elsewhere, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--parts" in r.stdout, r.stderr[-2000:]


def test_the_docker_image_copies_every_package():
    """The worker image installs the project from copied folders: a package missing there breaks
    the image (it happened when common/ and cli/ were new)."""
    packages = _packages()
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for top in sorted({p.split(".")[0] for p in packages}):
        assert f"COPY {top} ./{top}" in dockerfile, top
    assert "COPY configs ./configs" in dockerfile
    # and the build context lets every copied file through (Dockerfile.dockerignore excludes all else):
    # a folder copied but ignored fails the build with "not found"
    copied = [src for line in dockerfile.splitlines() if line.startswith("COPY ") and "--from" not in line
              for src in line.split()[1:-1]]
    ignored = [name for name in copied for f in ([ROOT / name] if (ROOT / name).is_file() else
                                                  [g for g in (ROOT / name).rglob("*.*") if g.is_file()][:1])
               if _docker_ignores(f.relative_to(ROOT).as_posix())]
    assert not ignored, f"docker/Dockerfile.dockerignore leaves out what the image copies: {ignored}"


def _docker_ignores(rel: str) -> bool:
    """Whether docker/Dockerfile.dockerignore keeps ``rel`` (a path under the repository root) out of
    the build context: its patterns in order, the last that matches decides, ``!`` lets through."""
    out = False
    for line in (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        if fnmatch.fnmatchcase(rel, line.lstrip("!")):  # fnmatch's * crosses "/", as ** does here
            out = not keep
    return out
