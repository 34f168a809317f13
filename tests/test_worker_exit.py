"""Pool workers end when their parent is killed (kill -9), instead of lingering with their models."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

POOL_SCRIPT = """
import sys, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from common.process import exit_with_parent

def work(i):
    time.sleep(120)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=exit_with_parent)
    futures = [pool.submit(work, i) for i in range(2)]
    print("ready", flush=True)
    time.sleep(300)
"""


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a test's script and everything it started."""
    try:
        for p in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                p.kill()
    except psutil.Error:
        pass
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def _descendants_after_kill(proc: subprocess.Popen, wait_for: int, timeout: float = 120.0) -> list[psutil.Process]:
    """Wait until ``proc`` has ``wait_for`` descendants, SIGKILL it, return the descendants."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    kids: list[psutil.Process] = []
    while time.monotonic() < deadline:
        kids = parent.children(recursive=True)
        if len(kids) >= wait_for:
            break
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            _kill_tree(proc)
            pytest.fail(f"the parent ended early (status {proc.returncode}): {out}")
        time.sleep(0.2)
    else:
        _kill_tree(proc)  # a failed test must not leave its sleeping parent and workers behind
        pytest.fail(f"the parent never started {wait_for} worker processes (saw {len(kids)})")
    time.sleep(1.0)  # workers initialised
    kids = parent.children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return kids


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE  # a zombie has exited (init has not reaped it yet)
    except psutil.NoSuchProcess:
        return False


def _assert_all_gone(kids: list[psutil.Process], within: float) -> None:
    deadline = time.monotonic() + within
    alive = [p for p in kids if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _running(p)]
    names = []
    for p in alive:
        names.append((p.pid, " ".join(p.cmdline()[:4])))
        p.kill()
    assert not alive, f"still running {within:.0f} s after the parent was killed: {names}"


def test_pool_workers_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    kids = _descendants_after_kill(proc, wait_for=2)
    _assert_all_gone(kids, within=10)



def test_cli_extract_workers_exit_when_the_cli_is_killed(tmp_path):
    """`senbert extract --workers 2`, killed with SIGKILL while its workers start (importing torch
    and MediaPipe) or extract: no worker, and no resource tracker, outlives it."""
    clips = sorted((ROOT / "tests" / "fixtures" / "grid").glob("*.mpg"))
    assert len(clips) >= 2
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SENBERT_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "cli", "extract", *map(str, clips), "--workers", "2",
           "--cache", str(tmp_path / "cache"), "--set", "visual.fps=5", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    kids = _descendants_after_kill(proc, wait_for=2)
    _assert_all_gone(kids, within=20)


TASK_SCRIPT = """
import sys, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pipeline.features.cache import FeatureCache
from pipeline.features.extract import extract_clip
from pipeline.features.config import load_extract_config

def task(path, cache):
    # what a task of the build-features flow runs in a worker of Prefect's ProcessPoolTaskRunner
    # (a spawn-context ProcessPoolExecutor, no initializer of ours), then idles like a pool worker
    extract_clip(path, load_extract_config("default", ["visual.fps=5"]), FeatureCache(cache))
    time.sleep(300)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"))
    futures = [pool.submit(task, p, sys.argv[1]) for p in sys.argv[2:4]]
    time.sleep(600)
"""


def test_task_workers_of_a_process_pool_exit_when_the_flow_process_is_killed(tmp_path):
    """The guard sits in extract_clip itself, so workers of a pool we do not create (Prefect's
    process task runner) end with their parent too."""
    script = tmp_path / "tasks.py"
    script.write_text(TASK_SCRIPT)
    clips = sorted((ROOT / "tests" / "fixtures" / "grid").glob("*.mpg"))[:2]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SENBERT_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), *map(str, clips)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list((tmp_path / "cache").rglob("*.json"))) < 1:
        if proc.poll() is not None:  # the script died: no point waiting out the deadline
            break
        time.sleep(0.5)  # wait until a task has run extract_clip (its guard is on)
    kids = parent.children(recursive=True)
    if not kids:
        out = "" if proc.poll() is None else (proc.stdout.read() if proc.stdout else "")
        _kill_tree(proc)
        pytest.fail(f"no worker processes (status {proc.poll()}): {out[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _assert_all_gone(kids, within=20)


def test_cli_score_workers_exit_when_the_cli_is_killed(tmp_path):
    """`senbert score --workers 2` (the default model; extraction in a pool) killed with SIGKILL."""
    clips = sorted((ROOT / "tests" / "fixtures" / "grid").glob("*.mpg"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SENBERT_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "cli", "score", *map(str, clips), "--workers", "2", "--out", str(tmp_path / "out"),
           "--cache", str(tmp_path / "cache"), "--set", "visual.fps=5", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    kids = _descendants_after_kill(proc, wait_for=2)
    _assert_all_gone(kids, within=20)
