"""The Python front object (pipeline.scoring.api.Scorer), driven as a notebook user would: a fresh
interpreter, the default model, one spoken file; nothing written until asked, and what is
written on request is what `senbert score` writes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "tests" / "fixtures" / "spoken" / "negative_2.mp4"  # "I hate this phone. ...", 5.9 s

SCRIPT = r"""
import json, os, sys
from pipeline import Scorer

cache, out = sys.argv[1], sys.argv[2]
scorer = Scorer.load(cache_dir=cache)                # the shipped default model
result = scorer(sys.argv[3])                         # one file; nothing written but the cache
f = result[0]
u = f.utterances[0]
before = sorted(os.listdir("."))
df, udf = result.to_dataframe(), result.utterances_dataframe()
written = result.save(out)                           # the files of `senbert score`
print(json.dumps({
    "repr": repr(scorer), "model": result.model, "modalities": result.modalities, "n": len(result),
    "path": f.path, "status": f.status, "ok": f.ok, "score": f.score, "polarity": f.polarity,
    "class7_name": f.class7_name, "transcript": f.transcript, "duration": f.duration,
    "file_modalities": f.modalities, "face_share": f.face_share, "warnings": f.warnings, "error": f.error,
    "utterance": [u.index, u.start, u.end, u.transcript, u.score, u.status, u.modalities],
    "before_save": before, "df": [list(df.columns), len(df), float(df["score"][0])],
    "udf": [list(udf.columns), len(udf)], "csv": written.csv_path, "report": written.report_index,
}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT),
            "SENBERT_HOME": os.environ.get("SENBERT_HOME", str(Path.home() / ".cache" / "senbert"))}


def _rows(path: Path) -> list[dict[str, str]]:
    skip = {"report", "scored_at"}  # where this run's report page lies, and when it ran
    return [{k: v for k, v in r.items() if k not in skip} for r in csv.DictReader(path.open(encoding="utf-8"))]


def test_the_python_api_scores_a_file_in_three_lines_and_writes_what_senbert_score_writes(tmp_path):
    work = tmp_path / "notebook"
    work.mkdir()
    cache, api_out, cli_out = tmp_path / "cache", tmp_path / "api", tmp_path / "cli"
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(cache), str(api_out), str(CLIP)], cwd=work,
                       capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["modalities"] == "text" and got["file_modalities"] == "text" and got["n"] == 1
    assert got["model"].startswith("senbert-text") and "reads text" in got["repr"]
    assert (got["path"], got["status"], got["ok"], got["error"]) == (str(CLIP), "ok", True, None)
    assert got["score"] < -0.5 and got["polarity"] == "negative" and got["class7_name"]
    assert "phone" in got["transcript"].lower() and got["duration"] > 5 and got["face_share"] > 0.5
    index, start, end, transcript, score, status, modalities = got["utterance"]
    assert (index, start, status, modalities) == (0, 0.0, "ok", "text") and abs(end - got["duration"]) < 1e-3
    assert transcript == got["transcript"] and score == got["score"]  # a short file is one utterance
    assert got["before_save"] == []  # nothing written in the working folder, nor anywhere but the cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api", "cache", "notebook"]
    assert got["df"][1] == 1 and got["df"][2] == got["score"] and "transcript" in got["df"][0]
    assert got["udf"][1] == 1 and {"start", "end", "score"} <= set(got["udf"][0])
    assert got["csv"] == str(api_out / "scores.csv") and Path(got["report"]).is_file()
    # `senbert score` on the same file (the same cache: nothing extracted again) writes the same rows
    r = subprocess.run([sys.executable, "-m", "cli", "score", str(CLIP), "--out", str(cli_out), "--cache", str(cache),
                        "--quiet"], cwd=work, capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("scores.csv", "utterances.csv"):
        assert _rows(api_out / name) == _rows(cli_out / name), name
    assert sorted(p.name for p in api_out.iterdir()) == sorted(p.name for p in cli_out.iterdir())
