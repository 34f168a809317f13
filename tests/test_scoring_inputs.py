"""Every input a folder can hold, scored: an audio file, a video without sound, a video with a
silent track, and a file that is not media; with a language-only checkpoint and with a full
SenBERT checkpoint (sense block) trained on the real extractors' features.

The labels of the tiny SenBERT are made up (GRID sentences carry no sentiment): these tests
check what is scored from which modality, not accuracy.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cli import main
from common.errors import CheckpointMismatchError
from tests.extract_fixtures import GRID_CLIPS, fast_config, run_ffmpeg
from tests.test_flows_scoring import tiny_checkpoint

FAST = ["visual.fps=5"]
TINY_SENSE = {"model.d_model": 16, "model.num_heads": 2, "model.low_level_layers": 1, "model.self_attn_layers": 1,
              "model.high_level_layers": 1, "model.ffn_mult": 2, "max_text_len": 16, "batch_size": 4, "epochs": 1}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    grid = GRID_CLIPS[2]
    out = {"audio": d / "spoken.wav", "no_audio": d / "no sound.mp4", "silent": d / "silent track.mkv",
           "video": d / "talk.mpg", "text": d / "notes.txt", "no_face": d / "test card.mp4"}
    run_ffmpeg("-i", str(grid), "-vn", "-ac", "1", "-ar", "16000", str(out["audio"]))
    run_ffmpeg("-i", str(grid), "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out["no_audio"]))
    run_ffmpeg("-i", str(grid), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v", "-map", "1:a",
               "-t", "2.9", "-c:v", "copy", "-c:a", "pcm_s16le", str(out["silent"]))
    out["video"].write_bytes(grid.read_bytes())
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-i", str(grid), "-map", "0:v", "-map", "1:a",
               "-t", "2.9", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", str(out["no_face"]))
    out["text"].write_text("not a video\n")
    return out


@pytest.fixture(scope="session")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def sense_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny full SenBERT trained on the GRID clips' real features (made-up labels)."""
    from pipeline.corpora.inputs import entries_to_corpus
    from pipeline.features.cache import FeatureCache
    from pipeline.features.pool import extract_batch
    from pipeline.training.config import load_config
    from pipeline.training.trainer import train

    d = tmp_path_factory.mktemp("sense")
    cache = FeatureCache(d / "cache")
    rep = extract_batch(GRID_CLIPS, fast_config(), cache, progress=False)
    assert not rep.failed
    entries = []
    for k in range(8):
        e = cache.get(rep.keys[k % 3])
        e.clip_id = f"c{k}"
        entries.append(e)
    labels = {f"c{k}": float((-1) ** k * (k % 3)) for k in range(8)}
    splits = {f"c{k}": "valid" if k >= 6 else "train" for k in range(8)}
    corpus = entries_to_corpus(entries, labels, splits, source="grid")
    cfg = load_config("quick", overrides=dict(TINY_SENSE))
    assert cfg.model.variant == "full"
    train(corpus, cfg, d / "run", progress=False)
    return d / "run" / "checkpoint"


def rows_by_name(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    return {Path(r["path"]).name: r for r in rows}


def test_a_language_only_checkpoint(inputs, text_checkpoint, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scores"
    code = main(["score", str(inputs["audio"].parent), "--checkpoint", str(text_checkpoint), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--quiet", *sum((["--set", s] for s in FAST), [])])
    assert code == 1  # two files have no speech to score
    rows = rows_by_name(out)
    assert set(rows) == {"spoken.wav", "no sound.mp4", "silent track.mkv", "talk.mpg", "notes.txt", "test card.mp4"}
    wav = rows["spoken.wav"]
    assert wav["status"] == "ok" and wav["modalities"] == "text" and wav["transcript"]
    assert wav["face_share"] == 0.0 and np.isfinite(wav["score"])
    assert rows["talk.mpg"]["status"] == "ok" and rows["talk.mpg"]["modalities"] == "text"
    assert rows["test card.mp4"]["status"] == "ok" and rows["test card.mp4"]["modalities"] == "text"  # no face
    for name, why in (("no sound.mp4", "no audio stream"), ("silent track.mkv", "silent")):
        r = rows[name]
        assert r["status"] == "failed" and r["score"] is None and r["modalities"] is None
        assert "no speech to score" in r["error"] and why in r["error"] and name in r["error"], r["error"]
    assert rows["notes.txt"]["status"] == "skipped" and "not a media file" in rows["notes.txt"]["error"]
    errors = json.loads((out / "score-errors.json").read_text())
    assert len(errors["failed"]) == 2 and [Path(s["path"]).name for s in errors["skipped"]] == ["notes.txt"]
    printed = capsys.readouterr().out
    assert "SKIPPED" in printed and "1 skipped" in printed and "2 failed" in printed


def test_a_checkpoint_with_a_sense_block(inputs, sense_checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    files = [str(inputs[k]) for k in ("audio", "no_audio", "silent", "video", "no_face")]
    code = main(["score", *files, "--checkpoint", str(sense_checkpoint), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--quiet", *sum((["--set", s] for s in FAST), [])])
    assert code == 0
    rows = rows_by_name(out)
    assert rows["spoken.wav"]["modalities"] == "text+audio"  # no face frames: vision masked
    assert rows["no sound.mp4"]["modalities"] == "vision"  # no voice and no speech: from the face
    assert rows["silent track.mkv"]["modalities"] == "vision"
    assert rows["talk.mpg"]["modalities"] == "text+audio+vision"
    assert rows["test card.mp4"]["modalities"] == "text+audio"  # no face in any frame: vision masked
    for r in rows.values():
        assert r["status"] == "ok" and np.isfinite(r["score"]) and np.isfinite(r["score_sense"])
    utt = list(csv.DictReader(open(out / "utterances.csv", encoding="utf-8")))
    assert {u["modalities"] for u in utt} == {"text+audio", "vision", "text+audio+vision"}


def test_a_checkpoint_trained_on_other_frame_rates_is_refused_before_any_extraction(
        inputs, sense_checkpoint, tmp_path: Path, capsys) -> None:
    from flows.runtime import check_checkpoint_fits
    from pipeline.models.predictor import model_meta, resolve_model_path

    cache = tmp_path / "cache"
    code = main(["score", str(inputs["video"]), "--checkpoint", str(sense_checkpoint), "--out", str(tmp_path / "o"),
                 "--cache", str(cache), "--quiet"])  # the default config's 10 fps; trained at 5
    assert code == 2
    err = capsys.readouterr().err
    assert "visual frame rate of 5" in err and "10" in err and str(sense_checkpoint) in err
    assert not list(cache.rglob("features.safetensors"))  # refused before extracting anything
    # the flows' check (score, evaluate), from the model's description alone, with the flow's
    # own parameters; the rates it was trained on pass; a text-only model reads no frames
    with pytest.raises(CheckpointMismatchError, match="visual frame rate") as refused:
        check_checkpoint_fits(sense_checkpoint, "default", [])
    assert str(sense_checkpoint) in str(refused.value)
    check_checkpoint_fits(sense_checkpoint, "default", FAST)
    packed = resolve_model_path("default")
    assert model_meta(packed).model_config.variant == "language_only"
    check_checkpoint_fits(packed, "default", None)


def test_a_masked_modality_scores_as_when_that_modality_is_padded_away(inputs, sense_checkpoint,
                                                                      tmp_path: Path) -> None:
    """The audio file scored alone equals the audio file in a batch with a full video (where its
    vision is all padding)."""
    from pipeline.scoring.score import score_videos

    alone = score_videos([inputs["audio"]], sense_checkpoint, tmp_path / "a", overrides=FAST,
                         cache_dir=tmp_path / "cache", progress=False, report=False)
    mixed = score_videos([inputs["video"], inputs["audio"]], sense_checkpoint, tmp_path / "b", overrides=FAST,
                         cache_dir=tmp_path / "cache", progress=False, report=False)
    a, b = alone.rows[0], mixed.rows[1]
    assert a["path"] == b["path"]
    assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert a["score_sense"] == pytest.approx(b["score_sense"], abs=1e-4)


def test_a_video_whose_name_is_not_utf8_is_extracted_scored_and_listed(tmp_path: Path, capsys) -> None:
    """On Linux a file name is bytes: one that is not UTF-8 (Latin-1 "café") reaches Python with a
    lone surrogate. ffmpeg-python hashed it as UTF-8 and the cache wrote it as UTF-8: the clip
    failed ("extraction failed unexpectedly"). It is now decoded, cached and scored; the output
    files write the name's odd byte as an escape that JSON reads back as the same name."""
    import os
    import shutil

    from pipeline.scoring.score import read_scores

    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.mpg")
    shutil.copyfile(GRID_CLIPS[0], folder / name)
    out = tmp_path / "out"
    code = main(["score", str(folder), "--out", str(out), "--cache", str(tmp_path / "cache"), "--quiet",
                 "--set", *FAST])
    assert code == 0, capsys.readouterr().err
    (row,) = read_scores(out)
    assert row["path"] == str(folder / name) and row["status"] == "ok" and row["transcript"]
    assert row["report"] and Path(row["report"]).is_file()
    assert "caf\\udce9.mpg" in (out / "scores.csv").read_text(encoding="utf-8")
