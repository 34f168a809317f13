"""Scoring precision (``--precision``; what ``auto`` picks on which hardware: test_precision_peft.py):
bf16 predicts close to fp32 with a fingerprint of its own, that scores made in one precision are not reused
for another, and the bench that measured it (with int8 as an experiment)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.models.packed import pack_model
from pipeline.models.predictor import Predictor
from tests.conftest import SENTENCES, make_corpus, tiny_lora_runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    corpus = make_corpus(32, text_only=True, seed=3)
    return pack_model(tiny_lora_runs(root, corpus), root / "pack", "tiny"), corpus


def test_bf16_predicts_close_to_fp32_under_a_fingerprint_of_its_own(tiny_pack):
    folder, corpus = tiny_pack
    fp32, bf16 = Predictor.load(folder), Predictor.load(folder, precision="bf16")
    assert fp32.precision == "fp32" and all(m.precision == "bf16" for m in bf16.members)
    clips = corpus.split("valid")
    ref = np.array(fp32.predict_clips(clips)["multimodal"])
    got = np.array(bf16.predict_clips(clips)["multimodal"])
    assert np.abs(got - ref).max() < 0.05
    assert not np.array_equal(got, ref)  # computed in bf16, not silently in fp32
    assert bf16.fingerprint == f"{fp32.fingerprint}-bf16" and bf16.members[0].fingerprint == bf16.fingerprint


def test_bench_precision_prints_every_precision_beside_fp32(tiny_pack, tmp_path, capsys):
    folder, _ = tiny_pack
    spec = importlib.util.spec_from_file_location("bench_precision", ROOT / "bench" / "bench_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--data", str(SENTENCES), "--checkpoint", str(folder), "--precisions", "int8",
                       "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "CPU:" in out and "| fp32 | with neighbours |" in out and "| int8 | alone |" in out
    figures = json.loads((tmp_path / "p.json").read_text())["figures"]
    assert set(figures) == {"fp32", "int8"} and figures["fp32"]["alone"]["max_diff"] == 0.0
    assert np.isfinite(figures["int8"]["with neighbours"]["metrics"]["mae"])


def test_scores_made_in_one_precision_are_not_reused_for_another(tiny_pack, tmp_path):
    from pipeline.features.cache import CacheEntry, FeatureCache
    from pipeline.scoring.score import ClipFeatures, read_scores, score_features

    folder, _ = tiny_pack
    cache = FeatureCache(tmp_path / "cache")
    words = [{"word": w, "start": 0.5 + 0.3 * i, "end": 0.8 + 0.3 * i, "probability": 0.9}
             for i, w in enumerate("what a lovely day this is".split())]
    cache.put(CacheEntry(key="k", source_path="/v/a.mp4", duration=3.0, audio=np.zeros((0, 1), np.float32),
                         audio_names=["x"], audio_times=np.zeros(0), vision=np.zeros((0, 1), np.float32),
                         vision_names=["y"], vision_times=np.zeros(0), transcript="what a lovely day this is",
                         words=words, face_share=0.0, warnings=[], meta={"fingerprint": "t"}))
    items, out = [ClipFeatures("/v/a.mp4", "k")], tmp_path / "scores"
    fp32 = score_features(items, Predictor.load(folder), cache, out, report=False)
    bf16_model = Predictor.load(folder, precision="bf16")
    bf16 = score_features(items, bf16_model, cache, out, report=False)
    assert (fp32.scored, bf16.scored, bf16.reused) == (1, 1, 0)
    row = read_scores(out)[0]
    assert row["checkpoint_fingerprint"].endswith("-bf16") and row["status"] == "ok"
    assert score_features(items, bf16_model, cache, out, report=False).reused == 1


def test_a_packed_models_fingerprint_does_not_change_with_its_card(tiny_pack):
    from pipeline.models.packed import read_manifest
    from pipeline.training.release.spoken import add_spoken

    folder, _ = tiny_pack
    before = Predictor.load(folder).fingerprint
    result = {"run": "r", "corpus": "mosi", "split": "valid", "voice": "piper", "mode": "clip", "gold_view": "alone",
              "asr_model": "whisper base", "precision": "fp32", "spoken": {"n": 1, "mae": 0.5, "corr": 0.9,
              "acc7": 0.5, "acc2_non0": 0.9}, "gold": {"n": 1, "mae": 0.5, "corr": 0.9, "acc7": 0.5,
              "acc2_non0": 0.9}, "wer": 0.1, "wer_no_fillers": 0.1, "segmentation": {}}
    card_before = read_manifest(folder)["files"].get("MODEL_CARD.md")
    add_spoken(folder, [result])
    assert read_manifest(folder)["files"]["MODEL_CARD.md"] != card_before
    assert Predictor.load(folder).fingerprint == before
