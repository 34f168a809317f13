"""The parts of the flows that need no server: settings, parameter checks, cache keys,
retry decisions, the stack's process handling and the deployments it serves."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.errors import ConfigError, InputError, MediaError

GRID_DIR = Path(__file__).parent / "fixtures" / "grid"


def test_task_runner_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    from flows.runtime import TASK_RUNNER_ENV, make_task_runner, task_runner_from_env

    r = make_task_runner("threads:3")
    assert isinstance(r, ThreadPoolTaskRunner) and r._max_workers == 3
    assert isinstance(make_task_runner("processes:2"), ProcessPoolTaskRunner)
    monkeypatch.setenv(TASK_RUNNER_ENV, "processes")
    assert isinstance(task_runner_from_env(), ProcessPoolTaskRunner)
    monkeypatch.setenv(TASK_RUNNER_ENV, "bogus")
    assert isinstance(task_runner_from_env(), ThreadPoolTaskRunner)  # a bad setting never breaks an import
    with pytest.raises(ConfigError, match="positive integer"):
        make_task_runner("threads:zero")
    with pytest.raises(ConfigError, match="unknown task runner"):
        make_task_runner("spark")
    try:
        import prefect_dask  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install prefect-dask"):
            make_task_runner("dask://scheduler:8786")
    else:
        assert make_task_runner("dask://scheduler:8786").address == "tcp://scheduler:8786"


def test_build_parameters_checked_before_work(tmp_path: Path) -> None:
    from flows.build_features import plan_build

    with pytest.raises(InputError, match="exactly one"):
        plan_build(cache_dir=str(tmp_path / "c"))
    with pytest.raises(InputError, match="exactly one"):
        plan_build(videos="a", label_csv="b", cache_dir=str(tmp_path / "c"))
    with pytest.raises(InputError, match="folder not found"):
        plan_build(videos=str(tmp_path / "missing"), cache_dir=str(tmp_path / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        plan_build(videos=str(tmp_path / "empty"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="nosuch"):
        plan_build(videos=str(GRID_DIR), extract_config="nosuch", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="section.key=value"):
        plan_build(videos=str(GRID_DIR), overrides=["fps5"], cache_dir=str(tmp_path / "c"))
    csv = tmp_path / "label.csv"
    csv.write_text("video_id,clip_id,text,label,mode\nv1,1,hello,1.0,train\n")
    with pytest.raises(InputError, match="has a video file"):
        plan_build(label_csv=str(csv), cache_dir=str(tmp_path / "c"))
    plan = plan_build(videos=str(GRID_DIR), overrides=["visual.fps=5"], cache_dir=str(tmp_path / "c"))
    assert sorted(i.clip_id for i in plan.items) == ["brbk7n", "lbax4n", "swwp2s"]
    assert plan.config.visual.fps == 5
    one = plan_build(videos=str(GRID_DIR / "lbax4n.mpg"), cache_dir=str(tmp_path / "c"))
    assert [i.clip_id for i in one.items] == ["lbax4n"]
    # an MMSA-FET corpus: Raw/<video_id>/<clip_id>.<ext>, transcripts given
    raw = tmp_path / "corpus" / "Raw" / "vid"
    raw.mkdir(parents=True)
    shutil.copyfile(GRID_DIR / "lbax4n.mpg", raw / "1.mpg")
    (tmp_path / "corpus" / "label.csv").write_text("video_id,clip_id,text,label,mode\nvid,1,lay blue,0.0,test\n"
                                                   "vid,2,gone,1.0,train\n")
    plan = plan_build(label_csv=str(tmp_path / "corpus" / "label.csv"), cache_dir=str(tmp_path / "c"))
    assert [(i.clip_id, i.transcript) for i in plan.items] == [("vid$_$1", "lay blue"), ("vid$_$2", "gone")]


def test_task_cache_key_is_the_feature_key_and_stale_records_go(tmp_path: Path) -> None:
    from flows.build_features import feature_task_key
    from flows.runtime import results_dir
    from pipeline.features.cache import FeatureCache
    from pipeline.features.config import load_extract_config

    cfg = load_extract_config("default")
    cache = FeatureCache(tmp_path / "c")
    clip = tmp_path / "my clip.mpg"
    shutil.copyfile(GRID_DIR / "lbax4n.mpg", clip)
    params = {"path": str(clip), "config": cfg.to_dict(), "cache_dir": str(cache.root), "transcript": None}
    key = feature_task_key(None, params)
    expected = cache.make_key(cache.content_hash(clip), cfg.fingerprint())
    assert key == f"features-{expected}"
    # the same bytes elsewhere: the same key; another config or transcript: another key
    moved = tmp_path / "elsewhere.mpg"
    shutil.copyfile(clip, moved)
    assert feature_task_key(None, {**params, "path": str(moved)}) == key
    other = load_extract_config("default", overrides=["visual.fps=5"]).to_dict()
    assert feature_task_key(None, {**params, "config": other}) != key
    assert feature_task_key(None, {**params, "transcript": "lay blue"}) != key
    # a Prefect record whose feature entry is not in the cache is dropped (the clip is extracted again)
    record = results_dir(cache.root) / key
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")
    assert feature_task_key(None, params) == key and not record.exists()
    assert feature_task_key(None, {**params, "path": str(tmp_path / "missing.mp4")}) is None


def test_bad_inputs_are_not_retried() -> None:
    from prefect.states import Failed

    from flows.build_features import worth_retrying

    assert not worth_retrying(None, None, Failed(data=MediaError("x.mp4: the file is empty")))
    assert not worth_retrying(None, None, Failed(data=InputError("missing")))
    assert not worth_retrying(None, None, Failed(data=ConfigError("bad config")))
    assert worth_retrying(None, None, Failed(data=RuntimeError("transient")))


def test_serve_offers_the_four_deployments() -> None:
    from flows.serve import deployments

    deps = {d.flow_name: d for d in deployments("default")}
    assert set(deps) == {"build-features", "score", "train", "evaluate"}
    assert all(d.name == "default" for d in deps.values())
    assert {"videos", "label_csv", "extract_config", "overrides", "cache_dir"} <= \
        set(deps["build-features"]._parameter_openapi_schema.properties)
    assert {"videos", "checkpoint", "out"} <= set(deps["score"]._parameter_openapi_schema.properties)


def test_prefect_yaml_deploys_the_four_flows_without_a_pull_step() -> None:
    """`pull: []`: with `pull: null` Prefect 3 adds a step that enters the deploying machine's
    folder, which a worker elsewhere (a container, another host) does not have."""
    import importlib

    import yaml

    from flows.serve import deployments

    root = Path(__file__).resolve().parent.parent
    spec = yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))
    assert spec["pull"] == [] and spec["prefect-version"] == __import__("prefect").__version__
    names = set()
    for d in spec["deployments"]:
        module, attr = d["entrypoint"].split(":")
        names.add((getattr(importlib.import_module(module), attr).name, d["name"]))
    assert names == {(d.flow_name, d.name) for d in deployments("default")}


def test_score_flows_default_out_is_per_folder_or_per_file(tmp_path: Path, monkeypatch) -> None:
    from flows.score import default_out

    monkeypatch.chdir(tmp_path)
    (tmp_path / "talks").mkdir()
    (tmp_path / "talks" / "a.mp4").write_bytes(b"x")
    assert default_out(tmp_path / "talks") == tmp_path / "runs" / "scores" / "talks"
    assert default_out(tmp_path / "talks" / "a.mp4") == tmp_path / "runs" / "scores" / "a"  # not "talks"


def test_stack_refuses_a_busy_port_before_starting_anything(tmp_path: Path) -> None:
    from flows.stack import LocalStack, StackError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        st = LocalStack(home=tmp_path / "home", port=port)
        with pytest.raises(StackError, match="in use"):
            st.start()
        assert st.server is None and st.serve is None
    with pytest.raises(ConfigError):
        LocalStack(home=tmp_path / "home", task_runner="spark").start()


def test_a_second_stack_on_the_same_home_is_refused_before_starting_anything(tmp_path: Path) -> None:
    """Two servers on one SQLite database (the second on a free port) would serve the same
    deployments twice; the home is locked by the stack that uses it."""
    from flows.stack import LocalStack, StackError, free_port

    home = tmp_path / "home"
    home.mkdir()
    first = LocalStack(home=home, port=free_port("127.0.0.1"))
    first._lock_home()
    second = LocalStack(home=home, port=free_port("127.0.0.1"))
    with pytest.raises(StackError, match=f"{home} is in use by another senbert stack .pid {__import__('os').getpid()}"):
        second.start()
    assert second.server is None and second.serve is None
    first.stop()  # releases it
    second._lock_home()
    second.stop()


def test_shown_command_is_what_a_user_types() -> None:
    from flows.stack import LocalStack

    st = LocalStack(port=4200)
    cmd = st.shown_command("build-features", {"videos": "/data/my videos", "overrides": ["visual.fps=5"]})
    assert cmd == ("prefect deployment run build-features/default -p 'videos=/data/my videos' "
                   "-p 'overrides=[\"visual.fps=5\"]' --watch")
    assert st.env()["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"


def test_stop_takes_the_whole_process_group() -> None:
    from flows.stack import _group_gone, _stop_process

    # a parent that ignores SIGINT and a grandchild: both must go
    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    time.sleep(1.0)
    t = time.monotonic()
    _stop_process(proc, signal.SIGINT, grace=1.0)
    assert proc.poll() is not None and _group_gone(proc.pid)
    assert time.monotonic() - t < 15
    _stop_process(proc, signal.SIGINT, grace=1.0)  # stopping twice is harmless


@pytest.mark.slow
def test_the_senbert_stack_command_serves_refuses_a_second_one_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The command users type (README, docs/flows.md): a real server and serving process come up
    and print how to use them; a second stack on the same home is refused; Ctrl-C stops both
    and leaves no process behind."""
    import psutil

    from flows.stack import free_port

    home, port = tmp_path / "home", free_port("127.0.0.1")
    cmd = [sys.executable, "-m", "cli", "stack", "--port", str(port), "--home", str(home), "--no-ui"]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        out = "".join(lines)
        assert f"127.0.0.1:{port}/api" in out and "build-features/default" in out, out[-3000:]
        assert "prefect deployment run score/default" in out and "runs/demo" not in out  # the default model
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert kids  # the server and the serving process
        second = subprocess.run([*cmd[:5], str(free_port("127.0.0.1")), *cmd[6:]], cwd=root, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode != 0 and "in use by another senbert stack" in second.stdout + second.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
        gone, alive = psutil.wait_procs(kids, timeout=30)
        assert not alive, alive
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
