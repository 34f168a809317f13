"""The shipped default model: loads offline with its hashes checked, refuses a changed byte, fits
the repository's size limits, is what scoring uses without --checkpoint, and its scores follow
the sentiment of spoken sentences through the whole pipeline (speech recognition included)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import CheckpointMismatchError
from pipeline.models.packed import MANIFEST, MAX_FILE_BYTES, MAX_TOTAL_BYTES, default_model_dir, read_manifest
from pipeline.models.predictor import Predictor
from pipeline.scoring.score import score_videos

ROOT = Path(__file__).resolve().parent.parent
SPOKEN = Path(__file__).parent / "fixtures" / "spoken"


@pytest.fixture(scope="module")
def default_model() -> Predictor:
    return Predictor.load("default")


def test_the_default_model_fits_the_repository_and_names_its_base_encoder():
    folder = default_model_dir()
    manifest = read_manifest(folder)
    files = [folder / rel for rel in manifest["files"]]
    assert all(f.stat().st_size <= MAX_FILE_BYTES for f in files)
    assert sum(f.stat().st_size for f in files) <= MAX_TOTAL_BYTES
    assert (folder / "MODEL_CARD.md").is_file() and "MODEL_CARD.md" in manifest["files"]
    for member in manifest["members"]:
        meta = json.loads((folder / member / "senbert.json").read_text())
        assert meta["model"]["adapter"] == "lora" and meta["model"]["variant"] == "language_only"
        assert meta["base_encoder"]["name"] == "all-mpnet-base-v2" and len(meta["base_encoder"]["sha256"]) == 64


def test_it_loads_offline_and_reads_text(default_model):
    assert default_model.modalities == "text"
    assert default_model.name == read_manifest(default_model_dir())["name"]
    from pipeline.corpora.clips import Clip

    clips = [Clip("a", "i loved it, a wonderful and moving film"), Clip("b", "awful, boring, a waste of my time")]
    out = default_model.predict_clips(clips)
    scores = out["multimodal"]
    assert scores[0] > 1.0 and scores[1] < -1.0


def test_it_carries_its_calibration_fitted_on_mosi_train(default_model):
    cal = default_model.calibration
    assert cal is not None and cal.kind == "quantile" and "mosi/label.csv train" in cal.fitted_on
    assert "calibration.json" in read_manifest(default_model_dir())["files"]
    assert cal.y[0] == -3.0 and cal.y[-1] == 3.0 and 0.0 in cal.x  # reaches both ends; zero stays zero
    import numpy as np

    raw = np.linspace(-2.6, 2.6, 53)
    mapped = cal(raw)
    assert np.all(np.diff(mapped) >= 0) and np.array_equal(np.sign(mapped), np.sign(raw))
    assert mapped.max() >= 2.5 and mapped.min() <= -2.5  # the extreme classes, out of reach raw
    assert cal(np.array([2.4]))[0] > 2.4  # a strong raw score grows
    figures = read_manifest(default_model_dir())["figures"]["MOSI"]
    assert figures["ensemble"]["mae"] < figures["uncalibrated"]["mae"]


def test_a_changed_byte_or_an_extra_file_is_refused(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(default_model_dir(verify=False), copy)
    member = read_manifest(copy)["members"][0]
    weights = copy / member / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors: SHA-256 .* was changed or damaged"):
        Predictor.load(copy)
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors: SHA-256 .* was changed or damaged"):
        Predictor.load(copy / member)  # one member named alone is checked too
    shutil.copytree(default_model_dir(verify=False), copy, dirs_exist_ok=True)  # repaired
    (copy / member / "extra.bin").write_bytes(b"x")
    with pytest.raises(CheckpointMismatchError, match=r"extra\.bin: not listed in .*manifest\.json"):
        Predictor.load(copy)
    (copy / member / "extra.bin").unlink()
    (copy / MANIFEST).unlink()
    with pytest.raises(Exception, match="checkpoint"):  # no manifest: not a packed model, nor a checkpoint
        Predictor.load(copy)


def test_predict_without_a_checkpoint_uses_it(tmp_path):
    data = tmp_path / "label.csv"
    data.write_text("video_id,clip_id,text,label,mode\n"
                    "v,1,what a beautiful and happy ending,2.0,test\n"
                    "v,2,the worst and most annoying thing ever,-2.0,test\n", encoding="utf-8")
    out = tmp_path / "pred.csv"
    r = subprocess.run([sys.executable, "-m", "cli", "predict", "--data", str(data), "--out", str(out), "--quiet"],
                       cwd=tmp_path, capture_output=True, text=True, env=_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    name = read_manifest(default_model_dir())["name"]
    assert [row["model"] for row in rows] == [name, name] and {row["modalities"] for row in rows} == {"text"}
    assert float(rows[0]["score"]) > 0 > float(rows[1]["score"])
    assert all(row["calibration"].startswith("quantile (mosi/label.csv train") for row in rows)
    assert float(rows[0]["score_raw"]) > 0 > float(rows[1]["score_raw"])


def test_spoken_sentences_get_scores_whose_signs_follow_their_sentiment(tmp_path, default_model):
    """The whole pipeline: decode, speech recognition (the packaged Whisper), the default model."""
    clips = sorted(SPOKEN.glob("*.mp4"))
    assert len(clips) == 4
    report = score_videos(clips, default_model, tmp_path / "scores", cache_dir=tmp_path / "cache",
                          overrides=["visual.fps=5"], progress=False)
    assert not report.failed, report.failed
    for row in report.rows:
        name = Path(row["path"]).stem
        assert row["model"] == default_model.name and row["modalities"] == "text"
        assert len(row["transcript"].split()) >= 8, row  # the sentence was recognised, not a fragment
        if name.startswith("positive"):
            assert row["score"] > 0.5, row
        else:
            assert row["score"] < -0.5, row


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT), "SENBERT_HOME": os.environ.get("SENBERT_HOME", str(Path.home()
            / ".cache" / "senbert"))}


def test_the_demo_scores_the_sample_videos_with_the_default_model(tmp_path):
    """The README's first command, without the Prefect stack (the e2e tests cover the stack)."""
    r = subprocess.run([sys.executable, "-m", "cli", "demo", "--no-stack", "--out", str(tmp_path / "demo")],
                       cwd=tmp_path, capture_output=True, text=True, env=_env(tmp_path))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "SHA-256 verified" in r.stdout
    rows = list(csv.DictReader((tmp_path / "demo" / "scores" / "scores.csv").open(encoding="utf-8")))
    name = read_manifest(default_model_dir())["name"]
    assert len(rows) == 3 and all(row["status"] == "ok" and row["model"] == name for row in rows)
    index = tmp_path / "demo" / "scores" / "report" / "index.html"
    assert index.is_file() and f"report: {index}" in r.stdout
