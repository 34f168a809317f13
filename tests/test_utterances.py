"""Utterances of long inputs: how they are found (synthetic word times) and what scoring makes
of them (GRID clips joined into one 33 s file with known join times, through the real
extractors, Whisper included)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from common.errors import ConfigError
from pipeline.scoring.utterances import UtteranceSettings, find_utterances, quiet_stretches
from tests.extract_fixtures import GRID_CLIPS, run_ffmpeg
from tests.test_flows_scoring import tiny_checkpoint

S = UtteranceSettings()


def words_of(*sentences: tuple[float, str], word_s: float = 0.3) -> list[dict]:
    """Words of sentences starting at the given times, each word ``word_s`` long, back to back."""
    out = []
    for start, text in sentences:
        t = start
        for w in text.split():
            out.append({"word": w, "start": round(t, 3), "end": round(t + word_s, 3), "probability": 0.9})
            t += word_s
    return out


# ----------------------------------------------------------------------------- finding them


def test_a_short_file_is_one_utterance_with_its_whole_transcript() -> None:
    words = words_of((0.5, "I love it."), (4.0, "Really."))
    u = find_utterances(words, 14.9, S, transcript="I love it. Really.")
    assert len(u) == 1 and (u[0].start, u[0].end, u[0].text) == (0.0, 14.9, "I love it. Really.")
    # the limit is a setting: 0 never cuts, a lower one cuts this file
    assert len(find_utterances(words, 40.0, UtteranceSettings(max_s=0), "x")) == 1
    lower = UtteranceSettings(max_s=5, min_s=0.2)
    assert [x.text for x in find_utterances(words, 14.9, lower, "")] == ["I love it.", "Really."]


def test_pauses_and_sentence_ends_cut_never_inside_a_word() -> None:
    words = words_of((0.0, "this is the first one"), (2.5, "and a second part."), (4.0, "Third one here now"),
                     (20.0, "after a long silence"))
    us = find_utterances(words, 30.0, S, "")
    assert [u.text for u in us] == ["this is the first one", "and a second part.", "Third one here now",
                                    "after a long silence"]
    assert [w for u in us for w in u.words] == words  # every word once, in order
    for u, v in zip(us, us[1:]):
        assert u.end <= v.start  # no overlap
        assert u.words[-1]["end"] <= u.end and v.words[0]["start"] >= v.start  # words stay whole
    # padding: at most pad_s, at most half the pause to a neighbour, within the file
    assert us[0].start == 0.0 and us[1].start == pytest.approx((1.5 + 2.5) / 2)
    assert us[2].end == pytest.approx(5.2 + 1.0) and us[3].start == pytest.approx(20.0 - 1.0)
    assert us[3].end == pytest.approx(21.2 + 1.0)


def test_short_pieces_join_their_nearer_neighbour_and_long_ones_are_cut() -> None:
    words = words_of((0.0, "well."), (0.8, "I think this is quite good"), (14.0, "yes"), (16.0, "no"))
    us = find_utterances(words, 20.0, S, "")
    # "well." (0.3 s) joins the next piece across the 0.5 s pause; "yes" joins "no" (2 s away,
    # nearer than the 11 s pause before it, which would also make the result too long)
    assert [u.text for u in us] == ["well. I think this is quite good", "yes no"]
    # a monologue without any pause longer than 0.2 s, 60 words (18 s): cut in the middle
    mono = [{"word": f"w{i}", "start": i * 0.3, "end": i * 0.3 + 0.25} for i in range(60)]
    us = find_utterances(mono, 18.0, S, "")
    assert len(us) == 2 and all(u.words[-1]["end"] - u.words[0]["start"] <= S.max_s for u in us)
    assert [len(u.words) for u in us] == [30, 30]


def test_a_short_complete_sentence_between_clear_pauses_keeps_its_own_row() -> None:
    long_a, long_b = "I really liked the way this film was made.", "but the ending was weak and far too long"
    words = words_of((0.0, long_a), (4.0, "its okay."), (6.0, long_b))
    us = find_utterances(words, 20.0, S, "")  # "its okay." 0.6 s, 1.3 s of pause before, 1.4 s after
    assert [u.text for u in us] == [long_a, "its okay.", long_b]
    # hesitations are not a sentence; nor is a short piece close to a neighbour (0.4 s after it)
    assert len(find_utterances(words_of((0.0, long_a), (4.0, "um uh."), (6.0, long_b)), 20.0, S, "")) == 2
    near = find_utterances(words_of((0.0, long_a), (4.0, "its okay."), (5.0, long_b)), 20.0, S, "")
    assert [u.text for u in near] == [long_a, "its okay. " + long_b]
    # keep_pause_s 0: the rule of segmentation v2 (every short piece joins a neighbour)
    v2 = UtteranceSettings(keep_pause_s=0)
    assert [u.text for u in find_utterances(words, 20.0, v2, "")] == [long_a + " its okay.", long_b]
    assert "keep0.8" in S.signature() and S.signature().startswith("v3/")


def test_a_cut_at_the_longest_pause_leaves_no_piece_under_min_s() -> None:
    """20 s of speech whose only pause (0.5 s, under pause_s) follows its first word: cutting
    there left "So," alone (0.3 s); it joins its neighbour now, within max_s."""
    words = words_of((0.0, "So,"), (0.8, " ".join(f"w{i}" for i in range(64))), word_s=0.3)
    us = find_utterances(words, 21.0, S, "")
    assert all(u.words[-1]["end"] - u.words[0]["start"] >= S.min_s for u in us), [u.text for u in us]
    assert all(u.words[-1]["end"] - u.words[0]["start"] <= S.max_s for u in us)
    assert [w for u in us for w in u.words] == words


def test_word_times_that_run_into_silence_are_corrected_by_the_loudness() -> None:
    # Whisper often stretches the last word of a sentence over the pause after it
    words = [{"word": "one", "start": 0.0, "end": 0.6}, {"word": "two", "start": 0.6, "end": 3.4},
             {"word": "three", "start": 3.4, "end": 3.8}, {"word": "four", "start": 3.8, "end": 4.6}]
    t = np.arange(0, 20, 0.02)
    energy = np.where((t > 1.1) & (t < 3.3), -60.0, -10.0)  # silence from 1.1 to 3.3 s
    quiet = quiet_stretches(t, energy, 15.0)
    assert len(quiet) == 1 and quiet[0][0] == pytest.approx(1.1, abs=0.05)
    without = find_utterances(words, 20.0, S, "")
    assert len(without) == 1  # the word times alone show no pause
    us = find_utterances(words, 20.0, S, "", quiet)
    assert [u.text for u in us] == ["one two", "three four"]
    assert us[0].end == pytest.approx(1.1 + 1.0, abs=0.05) and us[1].start == pytest.approx(3.3 - 1.0, abs=0.12)


def test_no_words_windows_and_given_transcripts() -> None:
    us = find_utterances([], 40.0, S, "")
    assert [(u.start, u.end) for u in us] == [(0.0, 13.333), (13.333, 26.667), (26.667, 40.0)]
    assert "no speech" in us[0].notes[0]
    us = find_utterances([], 40.0, S, "a transcript given by the corpus")
    assert len(us) == 1 and us[0].text == "a transcript given by the corpus" and "no word times" in us[0].notes[0]


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown utterance setting"):
        UtteranceSettings.from_dict({"max_seconds": 3})
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        UtteranceSettings.from_dict({"pause_s": -1})
    with pytest.raises(ConfigError, match="every value must be a number"):
        UtteranceSettings.from_dict({"pause_s": "long"})
    with pytest.raises(ConfigError, match="must not exceed"):
        UtteranceSettings(max_s=2, min_s=3)
    assert UtteranceSettings.from_dict({"max_s": "30"}).max_s == 30.0
    assert UtteranceSettings().signature() != UtteranceSettings(max_s=30).signature()


def test_the_command_line_options_make_the_settings() -> None:
    import argparse

    from cli.score import utterance_settings

    args = argparse.Namespace(utterance=["min_s=2", "pad_s=0.5"], max_utterance=30.0, pause=None)
    assert utterance_settings(args) == UtteranceSettings(max_s=30, min_s=2, pad_s=0.5)
    with pytest.raises(ConfigError, match="--utterance expects KEY=VALUE"):
        utterance_settings(argparse.Namespace(utterance=["min_s"], max_utterance=None, pause=None))


# ----------------------------------------------------------------------------- a real long file

FAST = ["visual.fps=5"]
ORDER = [0, 1, 2] * 4  # GRID clips joined in this order (11 of them: 33 s)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny language-only checkpoint of the scoring tests (trained once per session)."""
    return tiny_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """Eleven GRID sentences joined into one mp4, and the times of the joins."""
    from extractors.media import probe

    d = tmp_path_factory.mktemp("long")
    clips = [GRID_CLIPS[i] for i in ORDER[:11]]
    args: list[str] = []
    for c in clips:
        args += ["-i", str(c)]
    n = len(clips)
    graph = "".join(f"[{i}:v][{i}:a]" for i in range(n)) + f"concat=n={n}:v=1:a=1[v][a]"
    out = d / "eleven sentences.mp4"
    run_ffmpeg(*args, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "aac", str(out))
    joins, t = [], 0.0
    for c in clips[:-1]:
        t += probe(c).duration
        joins.append(t)
    return out, joins


def test_a_long_file_is_scored_by_utterance(long_file, checkpoint, tmp_path: Path) -> None:
    from pipeline.scoring.score import FIELDS, UTTERANCE_FIELDS, read_scores, score_videos

    path, joins = long_file
    out, cache = tmp_path / "scores", tmp_path / "cache"
    rep = score_videos([path], checkpoint, out, overrides=FAST, cache_dir=cache, progress=False)
    assert not rep.failed
    utts = rep.utterances
    assert len(utts) == 11  # one per sentence
    for u, v, join in zip(utts, utts[1:], joins):
        assert abs(u["end"] - join) <= 0.5 and abs(v["start"] - join) <= 0.5, (u, v, join)
    # the transcript is complete: every recognised word is in exactly one utterance, in order
    from pipeline.features.cache import FeatureCache

    entry = FeatureCache(cache).get(rep.rows[0]["feature_key"])
    assert " ".join(u["transcript"] for u in utts).split() == [w["word"] for w in entry.words]
    assert all(4 <= len(u["transcript"].split()) <= 7 for u in utts)  # GRID sentences have 6 words
    assert all(u["status"] == "ok" and u["modalities"] == "text" for u in utts)
    # the file's row summarises its utterances
    row = rep.rows[0]
    assert row["n_utterances"] == 11 and row["duration"] == pytest.approx(33.0, abs=0.1)
    d = np.array([u["duration"] for u in utts])
    s = np.array([u["score"] for u in utts])
    assert row["score"] == pytest.approx(float((s * d).sum() / d.sum()), abs=1e-3)
    assert row["most_negative_score"] == min(s) and row["most_positive_score"] == max(s)
    lo = utts[int(np.argmin(s))]
    assert (row["most_negative_start"], row["most_negative_end"], row["most_negative_text"]) == \
        (lo["start"], lo["end"], lo["transcript"])
    assert row["share_positive"] + row["share_negative"] + row["share_neutral"] == pytest.approx(1.0, abs=1e-3)
    # files written: one row per file, one per utterance
    assert [r["path"] for r in read_scores(out)] == [str(path)]
    lines = read_scores(out, "utterances.jsonl")
    assert len(lines) == 11 and set(lines[0]) == set(UTTERANCE_FIELDS)
    header = next(csv.reader(open(out / "utterances.csv", encoding="utf-8")))
    assert header == UTTERANCE_FIELDS and next(csv.reader(open(out / "scores.csv", encoding="utf-8"))) == FIELDS
    assert Path(row["report"]).is_file() and Path(rep.report_index).is_file()
    # scored again with the same settings: reused; with other settings: scored again, one utterance
    again = score_videos([path], checkpoint, out, overrides=FAST, cache_dir=cache, progress=False)
    assert (again.scored, again.reused, len(again.utterances)) == (0, 1, 11)
    from pipeline.scoring.utterances import UtteranceSettings

    whole = score_videos([path], checkpoint, out, overrides=FAST, cache_dir=cache, progress=False,
                         utterances=UtteranceSettings(max_s=60))
    assert (whole.scored, whole.reused, len(whole.utterances)) == (1, 0, 1)
    assert whole.utterances[0]["transcript"] == entry.transcript
    errors = json.loads((out / "score-errors.json").read_text())
    assert errors["failed"] == [] and errors["skipped"] == []


def test_a_short_sentence_after_a_pause_in_a_joined_file_comes_back_as_its_own_utterance(checkpoint,
                                                                                         tmp_path: Path) -> None:
    """Real speech through Whisper: two spoken clips with "It's okay." (0.75 s of speech) between
    them, 1 s of silence on each side."""
    from pipeline.features.cache import FeatureCache
    from pipeline.scoring.score import score_videos
    from pipeline.scoring.utterances import entry_utterances

    spoken = Path(__file__).parent / "fixtures" / "spoken"
    joined = tmp_path / "joined.wav"
    parts = [spoken / "negative_2.mp4", spoken / "its_okay.wav", spoken / "positive_2.mp4"]
    args: list[str] = []
    for f in parts:
        args += ["-i", str(f)]
    pad = "apad=pad_dur=1,aresample=16000,aformat=channel_layouts=mono"
    graph = "".join(f"[{i}:a]{pad}[a{i}];" for i in range(3)) + "[a0][a1][a2]concat=n=3:v=0:a=1[a]"
    run_ffmpeg(*args, "-filter_complex", graph, "-map", "[a]", str(joined))
    rep = score_videos([joined], checkpoint, tmp_path / "scores", cache_dir=tmp_path / "cache", progress=False)
    assert not rep.failed, rep.failed
    texts = [u["transcript"] for u in rep.utterances]
    alone = [t for t in texts if "okay" in t.lower()]
    assert len(alone) == 1 and len(alone[0].split()) <= 3, texts  # "It's okay." on its own row
    # the rule of segmentation v2 merged it into a neighbour (the same cached words, re-cut)
    entry = FeatureCache(tmp_path / "cache").get(rep.rows[0]["feature_key"])
    merged = [u.text for u in entry_utterances(entry, UtteranceSettings(keep_pause_s=0)) if "okay" in u.text.lower()]
    assert len(merged) == 1 and len(merged[0].split()) > 3, merged


def test_the_limits_of_the_model_are_written_on_the_rows(long_file, checkpoint, tmp_path: Path) -> None:
    """The tiny checkpoint reads 16 tokens: the whole 33 s transcript is cut, and the row says so."""
    from pipeline.scoring.score import score_videos
    from pipeline.scoring.utterances import UtteranceSettings

    path, _ = long_file
    rep = score_videos([path], checkpoint, tmp_path / "s", overrides=FAST, cache_dir=tmp_path / "cache",
                       progress=False, utterances=UtteranceSettings(max_s=0), report=False)
    notes = rep.utterances[0]["notes"]
    assert any("transcript cut" in n and "first 16" in n for n in notes), notes
    assert rep.report_index == "" and not (tmp_path / "s" / "report").exists()


def test_with_a_context_model_the_neighbours_are_the_utterances_of_the_same_file(checkpoint, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """The corpus handed to the model: each utterance's context is built from its own file's
    utterances, in time order, never from another file's."""
    from pipeline.corpora.clips import with_context
    from pipeline.features.cache import CacheEntry, FeatureCache
    from pipeline.models.predictor import Predictor
    from pipeline.scoring.score import ClipFeatures, score_features

    cache = FeatureCache(tmp_path / "cache")
    for key, lead in (("a", "alpha"), ("b", "beta")):
        words = words_of(*((t, f"{lead} {n} is here.") for t, n in ((1.0, "one"), (6.0, "two"), (11.0, "three"),
                                                                     (16.0, "four"))))
        cache.put(CacheEntry(key=key, source_path=f"/v/{key}.mp4", duration=20.0,
                             audio=np.zeros((0, 1), np.float32),
                             audio_names=["x"], audio_times=np.zeros(0), vision=np.zeros((0, 1), np.float32),
                             vision_names=["y"], vision_times=np.zeros(0),
                             transcript=" ".join(w["word"] for w in words),
                             words=words, face_share=0.0, warnings=[], meta={"fingerprint": "t"}))
    predictor = Predictor.load(checkpoint)
    seen = []
    real = predictor.predict_corpus

    def spy(corpus, **kw):
        seen.append(corpus)
        return real(corpus, **kw)

    monkeypatch.setattr(predictor, "predict_corpus", spy)
    rep = score_features([ClipFeatures("/v/a.mp4", "a"), ClipFeatures("/v/b.mp4", "b")], predictor, cache,
                         tmp_path / "s", report=False)
    assert [u["transcript"] for u in rep.utterances][:4] == [f"alpha {n} is here." for n in
                                                              ("one", "two", "three", "four")]
    ctx = {c.text: c.context for c in with_context(seen[0].clips, 1)}
    assert ctx["alpha two is here."] == "before: alpha one is here. after: alpha three is here."
    assert ctx["beta one is here."] == "after: beta two is here."  # not the other file's utterances
    assert ctx["alpha four is here."] == "before: alpha three is here."


def test_utterances_stay_within_the_file_when_word_times_run_past_its_end() -> None:
    """A recogniser's word times can pass the end of the file: no utterance starts after it."""
    words = words_of((1.0, "a b c d e."), (12.0, "f g h."), (22.0, "i j."), (23.5, "k l."))
    utts = find_utterances(words, 20.0, UtteranceSettings(max_s=5, min_s=0.2), "")
    assert utts and all(0.0 <= u.start <= u.end <= 20.0 for u in utts), [(u.start, u.end) for u in utts]
    assert all(a.end <= b.start for a, b in zip(utts, utts[1:]))
    assert " ".join(u.text for u in utts) == " ".join(w["word"] for w in words)  # every word in one utterance


def test_a_file_name_that_is_not_utf8_and_a_failing_report_lose_no_scores(checkpoint, tmp_path: Path,
                                                                          monkeypatch, caplog) -> None:
    """On Linux a name that is not UTF-8 reaches Python with lone surrogates: writing it used to fail
    every output of the run. A report that cannot be written costs the report only; a run without
    a report leaves no row pointing at an earlier run's page."""
    import logging

    import pipeline.scoring.score as scoring
    from pipeline.features.cache import CacheEntry, FeatureCache
    from pipeline.models.predictor import Predictor
    from pipeline.scoring.score import ClipFeatures, read_scores, score_features

    cache = FeatureCache(tmp_path / "cache")
    bad = str(tmp_path / "caf\udce9.mp4")  # "café" in Latin-1 bytes, as the file system gave it
    words = words_of((1.0, "what a lovely day."))
    cache.put(CacheEntry(key="k", source_path=bad, duration=4.0, audio=np.zeros((0, 1), np.float32),
                         audio_names=["x"], audio_times=np.zeros(0), vision=np.zeros((0, 1), np.float32),
                         vision_names=["y"], vision_times=np.zeros(0), transcript="what a lovely day.",
                         words=words, face_share=0.0, warnings=[], meta={"fingerprint": "t"}))
    predictor = Predictor.load(checkpoint)
    items = [ClipFeatures(bad, "k"), ClipFeatures(str(tmp_path / "notes\udcff.txt"), None, "not media", skipped=True)]
    out = tmp_path / "s"
    rep = score_features(items, predictor, cache, out, report=True)
    rows = read_scores(out)
    assert [r["path"] for r in rows] == [bad, str(tmp_path / "notes\udcff.txt")]  # read back as the same names
    assert rows[0]["status"] == "ok" and rows[0]["report"] and Path(rows[0]["report"]).is_file()
    assert "caf\\udce9" in (out / "scores.csv").read_text(encoding="utf-8")  # the escape, in valid UTF-8
    assert rep.report_index and Path(rep.report_index).is_file()
    # without a report: the row is reused, and names no page
    again = score_features(items, predictor, cache, out, report=False)
    assert again.reused == 1 and read_scores(out)[0]["report"] is None
    # a report that fails: the scores are written all the same
    monkeypatch.setattr(scoring, "_write_reports", lambda *a, **k: 1 / 0)
    (out / "scores.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.scoring.score"):
        failed = score_features(items, predictor, cache, out, report=True)
    assert (out / "scores.csv").is_file() and failed.rows[0]["status"] == "ok" and failed.rows[0]["report"] is None
    assert "the HTML report could not be written (ZeroDivisionError" in caplog.text


def test_a_file_whose_scoring_fails_costs_the_other_files_nothing(checkpoint, tmp_path: Path, monkeypatch) -> None:
    """All utterances are scored in one batched pass; when that pass fails (say, memory for one
    huge file) the files are scored one by one and only the failing file is listed as failed."""
    from pipeline.features.cache import CacheEntry, FeatureCache
    from pipeline.models.predictor import Predictor
    from pipeline.scoring.score import ClipFeatures, read_scores, score_features

    cache = FeatureCache(tmp_path / "cache")
    for key, lead in (("a", "alpha"), ("b", "beta")):
        words = words_of((1.0, f"{lead} is a lovely day."))
        cache.put(CacheEntry(key=key, source_path=f"/v/{key}.mp4", duration=5.0, audio=np.zeros((0, 1), np.float32),
                             audio_names=["x"], audio_times=np.zeros(0), vision=np.zeros((0, 1), np.float32),
                             vision_names=["y"], vision_times=np.zeros(0),
                             transcript=" ".join(w["word"] for w in words), words=words, face_share=0.0,
                             warnings=[], meta={"fingerprint": "t"}))
    predictor = Predictor.load(checkpoint)
    real = predictor.predict_corpus

    def fails_on_beta(corpus, **kw):
        if any(c.text.startswith("beta") for c in corpus.clips):
            raise MemoryError("not enough memory for beta")
        return real(corpus, **kw)

    monkeypatch.setattr(predictor, "predict_corpus", fails_on_beta)
    rep = score_features([ClipFeatures("/v/a.mp4", "a"), ClipFeatures("/v/b.mp4", "b")], predictor, cache,
                         tmp_path / "s", report=False)
    assert [r["status"] for r in rep.rows] == ["ok", "failed"]
    assert rep.failed == [("/v/b.mp4", "/v/b.mp4: scoring failed (MemoryError: not enough memory for beta)")]
    assert read_scores(tmp_path / "s")[0]["score"] is not None
    # the next run reuses the scored file and tries the failed one again
    monkeypatch.setattr(predictor, "predict_corpus", real)
    again = score_features([ClipFeatures("/v/a.mp4", "a"), ClipFeatures("/v/b.mp4", "b")], predictor, cache,
                           tmp_path / "s", report=False)
    assert again.reused == 1 and again.scored == 1 and not again.failed
