"""Transcript styles: speech recognition's cased, punctuated text read in CMU-MOSI's plain style.

The style function itself (MOSI's transcripts unchanged, ASR text turned into them), a model
trained with ``text_style: plain`` that scores the two spellings of a sentence identically and
records the style, a packed model whose members are set to read plain text, and a checkpoint
with a style this version does not know refused with its file named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.errors import ConfigError, InputError
from pipeline.corpora.clips import Clip, styled
from pipeline.models.checkpoint import read_meta
from pipeline.models.packed import member_dirs, pack_model, read_manifest
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import train
from tests.conftest import TINY, make_corpus

ASR = ["They didn't LIKE it, honestly!", "It’s a well-known film... (2019) – 10/10 “great”.", "Okay?  Fine: snake_case"]
PLAIN = ["they didnt like it honestly", "its a well known film 2019 10 10 great", "okay fine snake case"]


def test_plain_style_is_mosis_and_leaves_mosi_transcripts_alone():
    assert [styled(t, "plain") for t in ASR] == PLAIN
    mosi = ["anyhow it was really good", "they didnt really do a whole bunch of background info", "i mean 2 of them"]
    assert [styled(t, "plain") for t in mosi] == mosi  # lower case, digits and spaces only: unchanged
    assert [styled(t, "plain") for t in PLAIN] == PLAIN  # idempotent
    assert styled(ASR[0], "as_given") == ASR[0] and styled("", "plain") == ""
    with pytest.raises(ConfigError, match="unknown text style 'lower'"):
        styled("x", "lower")
    with pytest.raises(ConfigError, match="text_style"):
        load_config("quick", overrides={"text_style": "lower"})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    corpus = make_corpus(32, text_only=True, seed=3)
    over = {**TINY, "epochs": 1, "model.adapter": "lora", "model.lora_r": 4, "model.variant": "language_only"}
    plain = train(corpus, load_config("quick", overrides={**over, "text_style": "plain"}), root / "plain",
                  progress=False).checkpoint
    given = train(corpus, load_config("quick", overrides={**over, "context": 1, "max_context_len": 8}), root / "given",
                  progress=False).checkpoint  # with utterance context: the readings bench has two readings to compare
    return root, plain, given


def _scores(predictor, texts):
    clips = [Clip(f"c{i}", text=t, split="test") for i, t in enumerate(texts)]
    return np.array(predictor.predict_clips(clips)["multimodal"])


def test_a_plain_model_scores_both_spellings_alike_and_records_its_style(runs):
    _, plain, given = runs
    meta = read_meta(plain)
    assert meta.text_style == "plain" and meta.train["text_style"] == "plain"
    pr = Predictor.load(plain)
    a, b = _scores(pr, ASR), _scores(pr, PLAIN)
    assert np.array_equal(a, b)
    assert read_meta(given).text_style == "as_given"  # the default: read as given
    g = Predictor.load(given)
    assert not np.array_equal(_scores(g, ASR), _scores(g, PLAIN))  # punctuation and case are tokens there


def test_a_pack_can_set_how_its_members_read_transcripts(runs):
    root, _, given = runs
    as_trained = pack_model([given], root / "as_trained", "tiny")
    restyled = pack_model([given], root / "restyled", "tiny", text_style="plain")
    folders, _ = member_dirs(restyled)
    meta = read_meta(folders[0])
    assert meta.text_style == "plain" and meta.train["text_style"] == "as_given"  # reads plain, trained as given
    assert read_meta(member_dirs(as_trained)[0][0]).text_style == "as_given"
    p, q = Predictor.load(restyled), Predictor.load(as_trained)
    assert p.fingerprint != q.fingerprint  # earlier scores of the other pack are not reused for it
    assert np.array_equal(_scores(p, ASR), _scores(q, PLAIN))  # what the model reads: the plain spelling
    assert read_manifest(restyled)["files"]["member_1/model.safetensors"] == \
        read_manifest(as_trained)["files"]["member_1/model.safetensors"]  # the weights themselves unchanged
    with pytest.raises(InputError, match="text_style='lower'"):
        pack_model([given], root / "bad", "tiny", text_style="lower")


def test_a_checkpoint_with_an_unknown_style_is_refused_naming_its_file(runs, tmp_path):
    import shutil

    _, _, given = runs
    copy = shutil.copytree(given, tmp_path / "ck")
    f = copy / "senbert.json"
    raw = json.loads(f.read_text())
    raw["text_style"] = "shouting"
    f.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"senbert\.json: text_style 'shouting'"):
        Predictor.load(copy)


def test_the_style_and_readings_benches_print_their_tables(runs, tmp_path):
    import subprocess
    import sys

    from tests.conftest import SENTENCES

    root, _, given = runs
    packed = pack_model([given], root / "bench_pack", "tiny")
    bench = SENTENCES.parents[2] / "bench"
    r = subprocess.run([sys.executable, str(bench / "bench_text_style.py"), "--data", str(SENTENCES), "--checkpoint",
                        str(packed), "--limit", "8", "--alone", "--out", str(tmp_path / "style.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "CPU:" in r.stdout and "| alone, plain, calibrated |" in r.stdout  # (no calibration: the raw figures)
    report = json.loads((tmp_path / "style.json").read_text())
    rows = report["data"][str(SENTENCES)]["rows"]
    assert set(rows) == {"context, as_given", "context, plain", "alone, as_given", "alone, plain"}
    assert report["data"][str(SENTENCES)]["n"] == 8
    r = subprocess.run([sys.executable, str(bench / "bench_context_views.py"), "--data", str(SENTENCES),
                        "--checkpoint", str(packed), "--limit", "40", "--out", str(tmp_path / "views.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    views = json.loads((tmp_path / "views.json").read_text())["data"][str(SENTENCES)]["views"]
    assert set(views) == {"context", "alone", "mean"} and "| mean, uncalibrated |" in r.stdout
    for v in views.values():  # calibrated too where the tiny model's scores on train have both signs
        assert set(v) <= {"uncalibrated", "calibrated"} and 0.0 <= v["uncalibrated"]["mae"] <= 6.0
    mae = {k: v["uncalibrated"]["mae"] for k, v in views.items()}  # |(a + b) / 2 - y| <= (|a - y| + |b - y|) / 2
    assert mae["mean"] <= (mae["context"] + mae["alone"]) / 2 + 1e-9
