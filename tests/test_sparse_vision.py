"""No stage at full rate that the model does not read: scoring with a model that reads no vision
runs the face landmarker at the sparse rate only (for the report's face share); a later model
that reads vision runs the visual stage alone on that cache; training still gets every modality.

Real components: a GRID clip (tests/fixtures/grid, CC BY 4.0) through the real extractors
(Whisper, librosa, MediaPipe), tiny checkpoints trained here. Work is counted, never timed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from extractors import acoustic, transcript, visual
from pipeline.corpora.clips import Clip, Corpus
from pipeline.features.cache import FeatureCache
from pipeline.features.config import load_extract_config
from pipeline.features.extract import SPARSE_VISION_FPS, media_key, sparse_key
from pipeline.features.pool import extract_batch
from pipeline.scoring.score import score_videos
from tests.conftest import TINY, WORDS
from tests.test_flows_scoring import tiny_checkpoint

GRID_CLIP = Path(__file__).parent / "fixtures" / "grid" / "lbax4n.mpg"  # 3 s, 25 fps, a face throughout


@pytest.fixture(scope="session")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float | None]]:
    """Every run of a stage in this process: (stage, frame rate of the visual stage)."""
    calls: list[tuple[str, float | None]] = []

    def wrap(cls: type, method: str, stage: str) -> None:
        original = getattr(cls, method)

        def run(self, *a, **k):  # type: ignore[no-untyped-def]
            calls.append((stage, getattr(self.settings, "fps", None) if stage == "visual" else None))
            return original(self, *a, **k)

        monkeypatch.setattr(cls, method, run)

    wrap(transcript.WhisperTranscriber, "transcribe", "asr")
    wrap(acoustic.LibrosaExtractor, "extract", "acoustic")
    wrap(visual.FaceLandmarkerExtractor, "extract", "visual")
    return calls


def full_checkpoint(base: Path, audio_names: list[str], vision_names: list[str]) -> Path:
    """A tiny full SenBERT (text + audio + vision) on random sequences with the extract config's columns."""
    from pipeline.training.config import load_config
    from pipeline.training.trainer import train

    run = base / "tiny_full_model"
    if not (run / "result.json").exists():
        shutil.rmtree(run, ignore_errors=True)
        rng = np.random.default_rng(0)
        clips = [Clip(f"v{i // 3}$_${i % 3}", " ".join(rng.choice(WORDS, 4)), float(rng.uniform(-3, 3)),
                      ("train", "train", "valid", "test")[i % 4],
                      rng.normal(size=(12, len(audio_names))).astype(np.float32),
                      rng.normal(size=(6, len(vision_names))).astype(np.float32)) for i in range(16)]
        cfg = load_config("quick", overrides={**TINY, "epochs": 1})
        train(Corpus(clips, list(audio_names), list(vision_names), "synthetic"), cfg, run, progress=False)
    return run / "checkpoint"


def test_text_only_scoring_samples_faces_sparsely_and_a_vision_model_adds_only_the_visual_stage(
        text_checkpoint: Path, counted: list, tmp_path: Path) -> None:
    clip = tmp_path / "talk.mpg"
    shutil.copy(GRID_CLIP, clip)
    cache_dir = tmp_path / "cache"
    cache = FeatureCache(cache_dir)
    cfg = load_extract_config("default")
    key = media_key(clip, cfg, cache).key

    # 1. a text-only model: every stage once, the face landmarker at the sparse rate
    text = score_videos([clip], text_checkpoint, tmp_path / "text", cache_dir=cache_dir, progress=False)
    row = text.rows[0]
    assert row["status"] == "ok" and row["modalities"] == "text"
    assert sorted(counted) == [("acoustic", None), ("asr", None), ("visual", SPARSE_VISION_FPS)]
    assert row["feature_key"] == sparse_key(key) and not cache.has(key)
    sparse = cache.get(sparse_key(key))
    assert sparse.meta["sparse"]["vision_fps"] == SPARSE_VISION_FPS
    assert 2 <= sparse.vision.shape[0] <= 4  # 3 s at 1 frame a second, against 30 at the config's 10
    assert row["face_share"] == pytest.approx(1.0)  # the report's face share, from the sparse frames

    # 2. a model that reads vision, on the same cache: the visual stage alone, at the config's rate
    counted.clear()
    full_ckpt = full_checkpoint(tmp_path, sparse.audio_names, sparse.vision_names)
    full = score_videos([clip], full_ckpt, tmp_path / "full", cache_dir=cache_dir, progress=False)
    assert full.rows[0]["status"] == "ok" and full.rows[0]["modalities"] == "text+audio+vision"
    assert counted == [("visual", cfg.visual.fps)]
    whole = cache.get(key)
    assert full.rows[0]["feature_key"] == key and "sparse" not in whole.meta
    assert whole.meta["completed_from"]["key"] == sparse_key(key)
    assert whole.vision.shape[0] == pytest.approx(3 * cfg.visual.fps, abs=1)
    assert whole.transcript == sparse.transcript and whole.words == sparse.words
    assert np.array_equal(whole.audio, sparse.audio) and whole.audio_names == sparse.audio_names

    # 3. the complete entry serves everyone now: text-only scoring and training extract nothing
    counted.clear()
    again = score_videos([clip], text_checkpoint, tmp_path / "text2", cache_dir=cache_dir, progress=False)
    assert again.rows[0]["feature_key"] == key and counted == []
    assert again.rows[0]["score"] == pytest.approx(row["score"], abs=1e-6)  # the text is the same
    batch = extract_batch([clip], cfg, cache, progress=False, errors_file=False)
    assert batch.keys == [key] and batch.cached == 1 and counted == []


def test_training_features_complete_a_sparse_entry_and_a_config_without_vision_is_not_sparse(
        counted: list, tmp_path: Path) -> None:
    clip = tmp_path / "talk.mpg"
    shutil.copy(GRID_CLIP, clip)
    cache = FeatureCache(tmp_path / "cache")
    cfg = load_extract_config("default")
    sparse = extract_batch([clip], cfg, cache, progress=False, errors_file=False, sparse_vision=True)
    key = media_key(clip, cfg, cache).key
    assert sparse.keys == [sparse_key(key)]
    counted.clear()
    # `senbert extract` and training read every modality: the sparse entry is completed
    full = extract_batch([clip], cfg, cache, progress=False, errors_file=False)
    assert full.keys == [key] and full.entries[0].vision.shape[0] >= 29 and counted == [("visual", cfg.visual.fps)]
    # a config without a visual extractor (or already at 1 fps or less) has nothing to make sparse
    counted.clear()
    novision = load_extract_config("default", overrides=["extractors.vision=null"])
    r = extract_batch([clip], novision, cache, progress=False, errors_file=False, sparse_vision=True)
    assert r.keys == [media_key(clip, novision, cache).key] and ("visual", None) not in counted
