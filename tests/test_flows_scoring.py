"""Batch scoring (pipeline/scoring/score.py) and ``senbert score``, without Prefect.

Real components: a tiny language-only checkpoint trained here, real cache entries, and the
GRID clips of tests/fixtures/grid (CC BY 4.0) through the real extractors.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.errors import InputError
from pipeline.features.cache import CacheEntry, FeatureCache
from pipeline.scoring.score import FIELDS, ClipFeatures, format_scores_table, read_scores, score_features, score_videos
from tests.conftest import TINY, make_corpus

GRID_DIR = Path(__file__).parent / "fixtures" / "grid"
FAST = ["visual.fps=5"]  # fewer frames, same extractors


def tiny_checkpoint(base: Path) -> Path:
    """A tiny language-only checkpoint, trained once per test session (shared through ``base``)."""
    from pipeline.training.config import load_config
    from pipeline.training.trainer import train

    run = base / "tiny_text_model"
    if not (run / "result.json").exists():
        if run.exists():
            shutil.rmtree(run)
        cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1})
        train(make_corpus(text_only=True), cfg, run, progress=False)
    return run / "checkpoint"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def predictor(checkpoint: Path):
    from pipeline.models.predictor import Predictor

    return Predictor.load(checkpoint)


def fake_entry(key: str, text: str, warnings: list[str] | None = None) -> CacheEntry:
    """A synthetic cache entry (random features, the same for a key in every run): for the
    text-only checkpoint of these tests only its transcript counts."""
    import zlib

    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return CacheEntry(
        key=key, source_path=f"/videos/{key}.mp4", duration=2.0,
        audio=rng.normal(size=(10, 3)).astype(np.float32), audio_names=["a0", "a1", "a2"],
        audio_times=np.arange(10) / 5.0, vision=rng.normal(size=(4, 2)).astype(np.float32),
        vision_names=["v0", "v1"], vision_times=np.arange(4) / 2.0, transcript=text, words=[],
        face_share=0.75, warnings=warnings or [], meta={"fingerprint": "test"},
    )


@pytest.fixture
def cache_with_entries(tmp_path: Path) -> tuple[FeatureCache, list[ClipFeatures]]:
    cache = FeatureCache(tmp_path / "cache")
    texts = {"k1": "good great lovely", "k2": "awful terrible boring", "k3": "okay fine"}
    for k, t in texts.items():
        cache.put(fake_entry(k, t, ["low face share"] if k == "k3" else None))
    items = [ClipFeatures(f"/videos/clip {k}.mp4", k) for k in texts]
    items.insert(1, ClipFeatures("/videos/broken.mp4", None, "/videos/broken.mp4: the file is empty (0 bytes)"))
    return cache, items


def test_rows_files_and_fields(cache_with_entries, predictor, tmp_path: Path) -> None:
    cache, items = cache_with_entries
    out = tmp_path / "scores"
    rep = score_features(items, predictor, cache, out)
    assert (rep.scored, rep.reused, len(rep.failed)) == (3, 0, 1)
    assert [r["path"] for r in rep.rows] == [it.path for it in items]  # input order, one row per clip
    rows = list(csv.DictReader(open(out / "scores.csv", encoding="utf-8")))
    lines = read_scores(out / "scores.jsonl")
    assert list(rows[0]) == FIELDS and len(rows) == len(lines) == 4
    for r in lines:
        assert set(r) == set(FIELDS)
        if r["path"].endswith("broken.mp4"):
            assert r["status"] == "failed" and "0 bytes" in r["error"] and r["score"] is None
            continue
        assert r["status"] == "ok" and -3.0 <= r["score"] <= 3.0
        assert r["polarity"] == ("positive" if r["score"] > 0 else "negative" if r["score"] < 0 else "neutral")
        assert r["class7"] == int(np.round(r["score"])) and r["class7_name"]
        assert r["score_language"] == r["score"] and r["score_sense"] is None  # a language-only checkpoint
        assert r["face_share"] == 0.75 and r["model_variant"] == "language_only"
        assert r["checkpoint_fingerprint"] == predictor.fingerprint
    assert lines[3]["warnings"] == ["low face share"] and rows[3]["warnings"] == "low face share"
    assert rows[0]["clip_id"] == "clip k1" and rows[0]["transcript"] == "good great lovely"
    errors = json.loads((out / "score-errors.json").read_text())
    assert [f["path"] for f in errors["failed"]] == ["/videos/broken.mp4"]
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporary files left
    table = format_scores_table(rep.rows)
    assert "FAILED" in table and "clip k2" in table


def test_same_checkpoint_and_features_are_not_scored_again(cache_with_entries, predictor, checkpoint,
                                                           tmp_path: Path) -> None:
    cache, items = cache_with_entries
    out = tmp_path / "scores"
    first = score_features(items, predictor, cache, out)
    again = score_features(items, predictor, cache, out)
    assert (again.scored, again.reused) == (0, 3)
    assert [r["scored_at"] for r in again.rows if r["status"] == "ok"] == \
           [r["scored_at"] for r in first.rows if r["status"] == "ok"]
    # other features for one clip (another file content or config): only that clip is scored
    cache.put(fake_entry("k4", "lovely"))
    items2 = [*items[:-1], ClipFeatures(items[-1].path, "k4")]
    third = score_features(items2, predictor, cache, out)
    assert (third.scored, third.reused) == (1, 2)
    # another checkpoint (other weights file): everything is scored again
    from pipeline.models.checkpoint import WEIGHTS_FILE
    from pipeline.models.predictor import Predictor

    other = tmp_path / "other_ckpt"
    shutil.copytree(checkpoint, other)
    os.utime(other / WEIGHTS_FILE, ns=(1, 1))
    fourth = score_features(items2, Predictor.load(other), cache, out)
    assert (fourth.scored, fourth.reused) == (3, 0)


def test_files_of_the_same_content_keep_their_own_utterances_when_reused(cache_with_entries, predictor,
                                                                        tmp_path: Path) -> None:
    """Two copies of one file share a feature key, and so earlier rows; each must come back
    with one row per utterance (before: both copies' rows, doubling on every run)."""
    cache, items = cache_with_entries
    ok = next(it for it in items if it.key)
    twins = [ClipFeatures("/a/talk.mp4", ok.key), ClipFeatures("/b/talk.mp4", ok.key)]
    out = tmp_path / "scores"
    first = score_features(twins, predictor, cache, out)
    for _ in range(2):
        again = score_features(twins, predictor, cache, out)
        assert again.reused == 2 and len(again.utterances) == len(first.utterances)
        for path in ("/a/talk.mp4", "/b/talk.mp4"):
            mine = [u for u in again.utterances if u["path"] == path]
            assert [u["index"] for u in mine] == list(range(again.rows[0]["n_utterances"]))


def test_a_file_whose_utterance_rows_are_incomplete_is_scored_again() -> None:
    from pipeline.scoring.score import _whole_utterances

    row = {"n_utterances": 3}
    utts = [{"index": 0, "x": "a"}, {"index": 2, "x": "c"}]  # index 1: a damaged line skipped on reading
    assert _whole_utterances(row, utts) is None
    whole = _whole_utterances(row, [*utts, {"index": 1, "x": "b"}, {"index": 0, "x": "twin"}])
    assert [u["x"] for u in whole] == ["a", "b", "c"]  # each index once, in order
    assert _whole_utterances(None, utts) is None and _whole_utterances(row, None) is None


def test_entry_missing_from_the_cache_is_a_failed_row(cache_with_entries, predictor, tmp_path: Path) -> None:
    cache, items = cache_with_entries
    cache.remove("k2")
    rep = score_features(items, predictor, cache, tmp_path / "s")
    bad = {p: m for p, m in rep.failed}
    assert "not in the cache" in bad["/videos/clip k2.mp4"] and len(rep.failed) == 2


def test_resolve_checkpoint_dir(checkpoint: Path, tmp_path: Path) -> None:
    from pipeline.models.checkpoint import resolve_checkpoint_dir

    assert resolve_checkpoint_dir(checkpoint) == checkpoint
    assert resolve_checkpoint_dir(checkpoint.parent) == checkpoint  # a run folder
    with pytest.raises(InputError, match="checkpoint not found"):
        resolve_checkpoint_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a checkpoint folder"):
        resolve_checkpoint_dir(tmp_path / "empty")


@pytest.fixture(scope="module")
def grid_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("grid videos")
    for p in sorted(GRID_DIR.glob("*.mpg")):
        shutil.copyfile(p, d / p.name)
    (d / "broken clip.mp4").write_bytes(b"")
    return d


def test_score_videos_on_grid_clips_with_a_broken_file(grid_folder: Path, checkpoint: Path, tmp_path: Path) -> None:
    from pipeline.corpora.inputs import list_videos

    videos = list_videos(grid_folder)
    cache = tmp_path / "cache"
    rep = score_videos(videos, checkpoint, tmp_path / "out", overrides=FAST, cache_dir=cache, progress=False)
    by_clip = {r["clip_id"]: r for r in rep.rows}
    assert set(by_clip) == {"brbk7n", "lbax4n", "swwp2s", "broken clip"}
    assert by_clip["broken clip"]["status"] == "failed" and "broken clip.mp4" in by_clip["broken clip"]["error"]
    for cid in ("brbk7n", "lbax4n", "swwp2s"):
        r = by_clip[cid]
        assert r["status"] == "ok" and r["transcript"] and r["face_share"] > 0.9 and r["feature_key"]
    again = score_videos(videos, checkpoint, tmp_path / "out", overrides=FAST, cache_dir=cache, progress=False)
    assert (again.scored, again.reused, len(again.failed)) == (0, 3, 1)
    # the failure is listed in the run's own file; `senbert extract`'s list (--retry-failed) is not scoring's
    listed = json.loads((tmp_path / "out" / "score-errors.json").read_text())["failed"]
    assert [Path(f["path"]).name for f in listed] == ["broken clip.mp4"]
    assert not list(cache.glob("errors-*.json"))


def test_senbert_score_command(grid_folder: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    from cli import main

    out = tmp_path / "cli_out"
    clip = grid_folder / "lbax4n.mpg"
    rc = main(["score", str(clip), "--checkpoint", str(checkpoint.parent), "--out", str(out),
               "--set", FAST[0], "--cache", str(tmp_path / "cache"), "--quiet"])
    assert rc == 0
    assert "lbax4n" in capsys.readouterr().out
    assert [r["clip_id"] for r in read_scores(out)] == ["lbax4n"]
    rc = main(["score", str(grid_folder / "broken clip.mp4"), "--checkpoint", str(checkpoint), "--out", str(out),
               "--set", FAST[0], "--cache", str(tmp_path / "cache"), "--quiet"])
    assert rc == 1  # the clip failed; its row says why
    assert read_scores(out)[0]["status"] == "failed"
    assert main(["score", str(grid_folder), "--checkpoint", str(tmp_path / "none")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "no folder"), "--checkpoint", str(checkpoint)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
