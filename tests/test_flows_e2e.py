"""End to end: a real Prefect server, the real serving process, runs through the Prefect CLI.

One local stack per module (``flows.stack.LocalStack``: ``prefect server start`` on a free
port with its SQLite database in a temporary PREFECT_HOME, and ``python -m flows.serve``),
stopped in the fixture's teardown also when a test fails or the run is interrupted. Every
run goes through ``prefect deployment run <flow>/default -p ... --watch``, exactly as a user
types it. Videos: the GRID clips of tests/fixtures/grid (CC BY 4.0) plus broken files whose
names have spaces.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from flows.stack import LocalStack, _group_gone, prefect_exe, sigterm_as_interrupt
from pipeline.features.cache import FeatureCache
from pipeline.scoring.score import FIELDS, read_scores
from tests.test_flows_scoring import tiny_checkpoint

GRID_DIR = Path(__file__).parent / "fixtures" / "grid"
GRID = sorted(p.name for p in GRID_DIR.glob("*.mpg"))
BROKEN = ["broken clip.mp4", "not a video.mp4"]
NOT_MEDIA = "readme.txt"
FAST = ["visual.fps=5"]  # fewer frames, same extractors

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("flows_e2e")
    videos = root / "my videos"
    videos.mkdir()
    for name in GRID:
        shutil.copyfile(GRID_DIR / name, videos / name)
    (videos / BROKEN[0]).write_bytes(b"")
    (videos / BROKEN[1]).write_text("this is a text file, not a video\n")
    (videos / NOT_MEDIA).write_text("notes about these clips\n")  # not media: listed by score as skipped
    return {"root": root, "videos": videos, "cache": root / "feature cache", "scores": root / "scores",
            "checkpoint": tiny_checkpoint(tmp_path_factory.getbasetemp())}


@pytest.fixture(scope="module")
def stack(work: dict[str, Any]):
    home = work["root"] / "prefect_home"
    st = LocalStack(home=home, ui=False, serve_log=home / "serve.log", cwd=work["root"],
                    env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    with sigterm_as_interrupt():
        st.start()
        try:
            yield st
        finally:
            st.stop()
            for proc in (st.serve, st.server):
                assert proc is not None and proc.poll() is not None and _group_gone(proc.pid)


def api(st: LocalStack, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(f"{st.api_url}{path}", method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read().decode())


def run(st: LocalStack, flow: str, params: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``prefect deployment run <flow>/default -p ... --watch``; the process and the flow run."""
    r = st.run_deployment(flow, params, timeout=300)
    m = re.search(r"UUID: ([0-9a-f-]{36})", r.stdout)
    assert m, r.stdout + r.stderr
    return r, api(st, f"/flow_runs/{m.group(1)}")


def serve_log(st: LocalStack) -> str:
    return st.serve_log.read_text(errors="replace")[-4000:] if st.serve_log and st.serve_log.exists() else ""


def task_states(st: LocalStack, flow_run_id: str) -> dict[str, str]:
    runs = api(st, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    return {t["name"]: t["state"]["name"] for t in runs}


def artifacts(st: LocalStack, flow_run_id: str) -> dict[str, Any]:
    arts = api(st, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a for a in arts}


def cache_state(cache: Path) -> dict[str, tuple[str, int]]:
    """Entry key -> (created, mtime of its features file)."""
    fc = FeatureCache(cache)
    return {k: (v["created"], (fc.entry_dir(k) / "features.safetensors").stat().st_mtime_ns)
            for k, v in fc.index().items()}


def bf_params(work: dict[str, Any]) -> dict[str, Any]:
    return {"videos": str(work["videos"]), "overrides": FAST, "cache_dir": str(work["cache"])}


def test_build_features_through_its_deployment(stack: LocalStack, work: dict[str, Any]) -> None:
    r, fr = run(stack, "build-features", bf_params(work))
    assert r.returncode == 0 and fr["state"]["name"] == "Completed", r.stdout[-2000:] + serve_log(stack)
    states = task_states(stack, fr["id"])
    assert sorted(s for n, s in states.items() if any(g[:-4] in n for g in GRID)) == ["Completed"] * 3
    assert sorted(s for n, s in states.items() if any(b[:-4] in n for b in BROKEN)) == ["Failed"] * 2
    # the cache holds the three good clips; the broken ones are listed in the errors file and an artifact
    cached = cache_state(work["cache"])
    assert len(cached) == 3
    errors = json.loads((work["cache"] / "errors-default.json").read_text())
    assert sorted(Path(f["path"]).name for f in errors["failed"]) == sorted(BROKEN)
    assert all(f["message"] for f in errors["failed"])
    arts = artifacts(stack, fr["id"])
    failed_rows = json.loads(arts["build-features-failed"]["data"])
    assert sorted(Path(row["path"]).name for row in failed_rows) == sorted(BROKEN)
    summary = arts["build-features-summary"]["data"]
    assert "| 5 | 3 | 0 | 2 |" in summary  # clips, done, cached, failed
    work["first_cache"] = cached


def test_second_run_recomputes_nothing(stack: LocalStack, work: dict[str, Any]) -> None:
    assert "first_cache" in work, "needs the first run"
    r, fr = run(stack, "build-features", bf_params(work))
    assert r.returncode == 0 and fr["state"]["name"] == "Completed", r.stdout[-2000:] + serve_log(stack)
    states = task_states(stack, fr["id"])
    assert sorted(s for n, s in states.items() if any(g[:-4] in n for g in GRID)) == ["Cached"] * 3
    assert sorted(s for n, s in states.items() if any(b[:-4] in n for b in BROKEN)) == ["Failed"] * 2
    assert cache_state(work["cache"]) == work["first_cache"]  # same entries, not rewritten
    assert "| 5 | 0 | 3 | 2 |" in artifacts(stack, fr["id"])["build-features-summary"]["data"]


def test_score_through_its_deployment(stack: LocalStack, work: dict[str, Any]) -> None:
    params = {"videos": str(work["videos"]), "checkpoint": str(work["checkpoint"]), "out": str(work["scores"]),
              "overrides": FAST, "cache_dir": str(work["cache"])}
    r, fr = run(stack, "score", params)
    assert r.returncode == 0 and fr["state"]["name"] == "Completed", r.stdout[-2000:] + serve_log(stack)
    csv_text = (work["scores"] / "scores.csv").read_text(encoding="utf-8")
    assert csv_text.split("\n")[0] == ",".join(FIELDS)
    rows = {Path(r["path"]).name: r for r in read_scores(work["scores"] / "scores.jsonl")}
    assert set(rows) == set(GRID) | set(BROKEN) | {NOT_MEDIA}
    assert rows[NOT_MEDIA]["status"] == "skipped" and "not a media file" in rows[NOT_MEDIA]["error"]
    utterances = read_scores(work["scores"], "utterances.jsonl")
    assert sorted(Path(u["path"]).name for u in utterances) == GRID  # short clips: one utterance each
    for name in GRID:
        row = rows[name]
        assert row["status"] == "ok" and -3 <= row["score"] <= 3 and row["polarity"] and row["class7_name"]
        assert row["transcript"] and row["face_share"] > 0.9 and row["score_language"] is not None
        assert row["feature_key"] in work["first_cache"]  # the features built before: none recomputed
    for name in BROKEN:
        assert rows[name]["status"] == "failed" and name in rows[name]["error"]
    arts = artifacts(stack, fr["id"])
    table = json.loads(arts["score-table"]["data"])
    assert len(table) == 6 and {"n_utterances", "share_positive", "most_negative_score"} <= set(table[0])
    link = arts["score-report"]["data"]  # a link artifact to the report's index
    assert link.startswith("[report/index.html](file://")
    from urllib.parse import unquote, urlparse

    index = Path(unquote(urlparse(link[link.index("(file://") + 1:-1]).path))
    assert index.is_file() and index.parent == work["scores"] / "report"
    for name in GRID:
        assert Path(rows[name]["report"]).is_file()
    # again: nothing extracted, nothing scored
    r2, fr2 = run(stack, "score", params)
    assert r2.returncode == 0 and fr2["state"]["name"] == "Completed", r2.stdout[-2000:] + serve_log(stack)
    again = {Path(r["path"]).name: r for r in read_scores(work["scores"] / "scores.jsonl")}
    assert [again[n]["scored_at"] for n in GRID] == [rows[n]["scored_at"] for n in GRID]
    # files, scored, reused, failed, skipped, utterances, features done, features cached
    assert "| 6 | 0 | 3 | 2 | 1 | 3 | 0 | 3 |" in artifacts(stack, fr2["id"])["score-summary"]["data"]
    assert cache_state(work["cache"]) == work["first_cache"]


@pytest.mark.parametrize("flow,params,message", [
    ("build-features", {"videos": "/nonexistent/folder"}, "folder not found"),
    ("build-features", {"videos": "VIDEOS", "extract_config": "nosuch"}, "nosuch"),
    ("score", {"videos": "VIDEOS", "checkpoint": "/nonexistent/ckpt"}, "checkpoint not found"),
    ("train", {"data": "CSV", "config": "nosuch"}, "config 'nosuch' not found"),
])
def test_parameters_are_checked_before_any_work(stack: LocalStack, work: dict[str, Any], flow: str,
                                                params: dict[str, Any], message: str) -> None:
    empty = work["root"] / "empty"
    empty.mkdir(exist_ok=True)
    csv_file = work["root"] / "label.csv"
    csv_file.write_text("video_id,clip_id,text,label,mode\nv,1,great,2.0,train\n")
    subst = {"EMPTY": str(empty), "VIDEOS": str(work["videos"]), "CSV": str(csv_file)}
    params = {k: subst.get(v, v) for k, v in params.items()}
    r, fr = run(stack, flow, params)
    assert r.returncode != 0 and fr["state"]["name"] == "Failed"
    assert message in fr["state"]["message"], fr["state"]["message"]
    assert task_states(stack, fr["id"]) == {}  # no task started


def test_bare_flow_name_is_refused(stack: LocalStack) -> None:
    """`prefect deployment run build-features` (no /default): refused, and no flow run is made."""
    before = len(api(stack, "/flow_runs/filter", {}))
    r = subprocess.run([prefect_exe(), "deployment", "run", "build-features"], env=stack.env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "UUID:" not in r.stdout, r.stdout + r.stderr
    assert len(api(stack, "/flow_runs/filter", {})) == before


def test_train_then_evaluate_through_their_deployments(stack: LocalStack, work: dict[str, Any]) -> None:
    from tests.conftest import TINY

    csv_file = work["root"] / "text corpus" / "label.csv"
    csv_file.parent.mkdir(exist_ok=True)
    lines = ["video_id,clip_id,text,label,mode"]
    for i in range(16):
        good = i % 2 == 1
        lines.append(f"v{i},1,{'a great lovely film' if good else 'an awful boring mess'},{2.0 if good else -2.0},"
                     f"{('train', 'train', 'valid', 'test')[i % 4]}")
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_dir = work["root"] / "retrained"
    r, fr = run(stack, "train", {"data": str(csv_file), "config": "quick", "ablation": "language_only",
                                 "overrides": {**TINY, "epochs": 1}, "out": str(run_dir)})
    assert r.returncode == 0 and fr["state"]["name"] == "Completed", r.stdout[-2000:] + serve_log(stack)
    assert (run_dir / "checkpoint" / "model.safetensors").is_file() and (run_dir / "result.json").is_file()
    arts = artifacts(stack, fr["id"])
    metrics = json.loads(arts["train-metrics"]["data"])
    assert [m["split"] for m in metrics] == ["valid", "test"] and all("mae" in m for m in metrics)
    assert "data:image/png;base64," in arts["train-plots"]["data"]
    r, fr = run(stack, "evaluate", {"checkpoint": str(run_dir), "data": str(csv_file), "split": "test"})
    assert r.returncode == 0 and fr["state"]["name"] == "Completed", r.stdout[-2000:] + serve_log(stack)
    row = json.loads(artifacts(stack, fr["id"])["evaluate-metrics"]["data"])[0]
    assert row["split"] == "test" and row["n"] == 4 and 0 <= row["mae"]
