"""From videos to a trained full SenBERT and back out: label.csv + Raw/ videos -> train -> predict,
and the extracted features exported in MMSA's pickle layout.

The labels here are made up for the test (GRID sentences carry no sentiment): this checks the
plumbing between the extractors, the cache, the trainer and the predictor, not accuracy.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from cli import main
from pipeline.corpora.mmsa import read_mmsa_pkl

GRID = Path(__file__).parent / "fixtures" / "grid"
TINY_SET = ["--set", "model.d_model=16", "--set", "model.num_heads=2", "--set", "model.low_level_layers=1",
            "--set", "model.self_attn_layers=1", "--set", "model.high_level_layers=1", "--set", "max_text_len=16"]


def make_fet_corpus(root: Path) -> Path:
    clips = sorted(GRID.glob("*.mpg"))
    sentences = {r["file"]: r["transcript"] for r in csv.DictReader(open(GRID / "transcripts.csv", encoding="utf-8"))}
    rows = []
    modes = ["train", "train", "valid", "test"]
    for i in range(8):
        src = clips[i % len(clips)]
        vid, cid = f"video{i // 2}", str(i % 2 + 1)
        (root / "Raw" / vid).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / "Raw" / vid / f"{cid}.mpg")
        rows.append({"video_id": vid, "clip_id": cid, "text": sentences.get(src.name, ""),
                     "label": f"{(-1) ** i * (i % 4) * 0.8:.1f}", "mode": modes[i % 4]})
    label_csv = root / "label.csv"
    with open(label_csv, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["video_id", "clip_id", "text", "label", "mode"])
        w.writeheader()
        w.writerows(rows)
    return label_csv


def test_train_full_model_on_videos_then_predict_and_export(tmp_path, capsys):
    label_csv = make_fet_corpus(tmp_path / "corpus")
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    common = ["--data", str(label_csv), "--raw-dir", str(tmp_path / "corpus"), "--cache", str(cache)]
    assert main(["train", *common, "--out", str(run), "--epochs", "1", "--batch-size", "4", "--quiet",
                 *TINY_SET]) == 0
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(run), *common, "--out", str(preds), "--quiet"]) == 0
    rows = list(csv.DictReader(open(preds, encoding="utf-8")))
    assert len(rows) == 8
    for r in rows:
        assert -3 <= float(r["score"]) <= 3
        assert r["score_sense"] != "" and r["score_language"] != ""
        assert r["polarity"] in ("positive", "negative", "neutral")
    # features exported for MMSA users keep their shapes, names and labels
    pkl = tmp_path / "features.pkl"
    assert main(["export-mmsa", *common, "--out", str(pkl)]) == 0
    exported = read_mmsa_pkl(pkl)
    assert exported.split_sizes() == {"train": 4, "valid": 2, "test": 2}
    import pickle

    with open(pkl, "rb") as f:
        raw = pickle.load(f)
    names = raw["train"]["vision_names"]
    assert any("blendshape" in n or "jaw" in n.lower() for n in names)
    assert raw["train"]["text_bert"].shape[1:] == (3, 50)
    first = exported.split("train")[0]
    assert first.audio.shape[1] == len(raw["train"]["audio_names"]) and np.isfinite(first.audio).all()
