"""Utterance context (``context: N``): the transcripts of the neighbouring clips of the same video
are a second text segment; their labels never are."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from pipeline.corpora.clips import Clip, with_context
from pipeline.models.dataset import encode_texts
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import train, train_seeds
from tests.conftest import SENTENCES, TINY, make_corpus, train_until_killed


def _clip(video: str, part: str, text: str, label: float = 0.0) -> Clip:
    return Clip(f"{video}$_${part}", text, label, "train")


def test_neighbours_come_from_the_same_video_in_clip_order():
    clips = [_clip("a", "10", "ten"), _clip("a", "2", "two"), _clip("b", "1", "other video"), _clip("a", "3", "three")]
    ctx = {c.clip_id: c.context for c in with_context(clips, 1)}
    assert ctx["a$_$2"] == "after: three"  # 2 < 3 < 10 as numbers, not as strings
    assert ctx["a$_$3"] == "before: two after: ten"
    assert ctx["a$_$10"] == "before: three"
    assert ctx["b$_$1"] == ""  # alone in its video
    wide = {c.clip_id: c.context for c in with_context(clips, 2)}
    assert wide["a$_$2"] == "after: three ten"
    assert all(c.context == "" for c in with_context(clips, 0))
    assert clips[0].context == ""  # the input is not changed


def test_neighbours_come_from_the_same_split_whichever_clips_are_given():
    """Training reads a split at a time; `predict` without --split reads the whole corpus: a clip
    must get the same neighbours both ways."""
    from dataclasses import replace

    clips = [replace(_clip("v", str(i), f"w{i}"), split=s) for i, s in enumerate(["train", "test", "test", "train"])]
    whole = {c.clip_id: c.context for c in with_context(clips, 1)}
    test_only = {c.clip_id: c.context for c in with_context([c for c in clips if c.split == "test"], 1)}
    assert whole["v$_$1"] == test_only["v$_$1"] == "after: w2"
    assert whole["v$_$0"] == "after: w3"  # its train neighbour, not the test clip between them


def test_a_clip_number_zero_in_meta_comes_first():
    clips = [Clip(f"x{k}", f"w{k}", 0.0, "train", meta={"video_id": "v", "clip": k}) for k in (2, 0, 1)]
    ctx = {c.clip_id: c.context for c in with_context(clips, 1)}
    assert ctx["x0"] == "after: w1" and ctx["x2"] == "before: w1"


def test_labels_never_reach_the_context():
    a = [_clip("v", str(i), f"word{i}", label=float(i)) for i in range(4)]
    b = [_clip("v", str(i), f"word{i}", label=-float(i)) for i in range(4)]
    assert [c.context for c in with_context(a, 1)] == [c.context for c in with_context(b, 1)]


def test_the_utterance_keeps_its_tokens_and_context_is_the_second_segment(minilm):
    _, tok, _ = minilm
    texts, contexts = ["a really good film", "bad"], ["before: it was long " * 20, ""]
    alone = encode_texts(tok, texts, 16)
    pair = encode_texts(tok, texts, 16, contexts, 12)
    assert pair[1] == alone[1]  # no context: exactly as without the option
    own = tok(texts[0], add_special_tokens=False)["input_ids"]
    assert pair[0][1:1 + len(own)] == own and pair[0][0] == tok.cls_token_id
    assert len(pair[0]) == len(own) + 12 + 3  # [CLS] text [SEP] context(12) [SEP]
    assert pair[0][len(own) + 1] == tok.sep_token_id and pair[0][-1] == tok.sep_token_id


def test_a_context_model_saves_the_option_and_reads_neighbours_at_inference(tmp_path):
    corpus = make_corpus(24, text_only=True)
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1, "context": 1,
                                                                      "max_context_len": 16})
    train(corpus, cfg, tmp_path / "run", progress=False)
    pred = Predictor.load(tmp_path / "run")
    assert pred.meta.context == 1 and pred.meta.max_context_len == 16
    valid = corpus.split("valid")
    base = pred.predict_clips(valid)["multimodal"]
    # the same clips with other neighbours: another context, another score
    changed = [Clip(c.clip_id, c.text, c.label, c.split) for c in valid]
    extra = [Clip(c.clip_id.split("$_$")[0] + "$_$9", "absolutely terrible awful boring", 0.0, "valid") for c in valid]
    mixed = pred.predict_clips(changed + extra)["multimodal"][:len(valid)]
    assert np.all(np.isfinite(mixed))
    assert not np.allclose(base, mixed)
    # evaluate reads the unlabelled clips of the split too (as neighbours), scores the labelled ones
    from pipeline.corpora.clips import Corpus

    unlabelled = [Clip(c.clip_id, c.text, None, c.split) for c in extra]
    with_them = Corpus(changed + unlabelled, [], [], source="mixed")
    m = pred.evaluate(with_them, "valid")
    assert m["n"] == len(valid)
    want = pred.predict_clips(changed + unlabelled)["multimodal"][:len(valid)]
    assert m["mae"] == pytest.approx(float(np.mean(np.abs(np.asarray(want) - [c.label for c in valid]))), abs=1e-6)


def test_a_runs_test_figures_read_the_split_as_evaluate_does(tmp_path):
    """On a partly labelled test split, result.json's test metrics come from every test clip read
    with its neighbours (labelled or not), as `senbert evaluate` reads it: the same figures."""
    import json

    corpus = make_corpus(24, text_only=True)
    tests = corpus.split("test")
    assert len(tests) >= 2
    # a neighbour without a label, in the same video as a labelled test clip
    tests[0].clip_id = tests[1].clip_id.split("$_$")[0] + "$_$8"
    tests[0].label = None
    tests[0].text = "absolutely terrible awful boring"
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1, "context": 1,
                                                                      "max_context_len": 16})
    train(corpus, cfg, tmp_path / "run", progress=False)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    m = Predictor.load(tmp_path / "run").evaluate(corpus, "test")
    assert result["test"]["mae"] == pytest.approx(m["mae"], abs=1e-9)
    alone = Predictor.load(tmp_path / "run").predict_clips([c for c in tests if c.label is not None])
    assert not np.isclose(float(np.mean(np.abs(np.asarray(alone["multimodal"]) - alone["labels"]))), m["mae"])


def test_context_settings_are_checked():
    with pytest.raises(Exception, match="context"):
        load_config("quick", overrides={"context": -1})


def test_the_preliminary_stage_can_run_without_context(tmp_path):
    """``pretrain_context: 0``: the stage (the costly part) reads clips alone, the main stage with
    their neighbours; unset, the stage takes ``context`` as before."""
    corpus = make_corpus(12, text_only=True)
    over = {**TINY, "epochs": 1, "context": 1, "max_context_len": 8, "pretrain": [str(SENTENCES)],
            "pretrain_epochs": 1}
    cfg = load_config("quick", ablation="language_only", overrides={**over, "pretrain_context": 0})
    train_seeds(corpus, cfg, tmp_path / "a", [1], progress=False)
    assert yaml.safe_load((tmp_path / "a" / "pretrain" / "config.yaml").read_text())["context"] == 0
    assert Predictor.load(tmp_path / "a" / "pretrain").meta.context == 0
    assert Predictor.load(tmp_path / "a" / "seed_1").meta.context == 1
    cfg = load_config("quick", ablation="language_only", overrides=over)
    train_seeds(corpus, cfg, tmp_path / "b", [1], progress=False)
    assert yaml.safe_load((tmp_path / "b" / "pretrain" / "config.yaml").read_text())["context"] == 1
    for bad in (-1, 1.5, True):
        with pytest.raises(Exception, match="pretrain_context"):
            load_config("quick", overrides={"pretrain_context": bad})


def test_context_dropout_reads_some_clips_alone_in_training_only(minilm):
    """``context_dropout: p``: each time a clip with neighbours is fetched for training, it is read
    alone (exactly its encoding without the option) with probability p; clips without neighbours
    and datasets that never had it set (valid, inference) are untouched."""
    import torch

    from pipeline.models.dataset import ClipDataset

    _, tok, _ = minilm
    clips = with_context([_clip("v", str(i), f"sentence number {i} was fine") for i in range(40)]
                         + [_clip("solo", "1", "alone in its video")], 1)
    ds = ClipDataset(clips, tok, max_text_len=16, max_context_len=12, use_audio=False, use_vision=False)
    alone = encode_texts(tok, [c.text for c in clips], 16)
    assert [ds[i]["input_ids"] for i in range(len(ds))] == [it["input_ids"] for it in ds.items]  # off by default
    assert ds.items[-1]["input_ids"] == alone[-1] and "input_ids_alone" not in ds.items[-1]
    ds.set_context_dropout(0.5, torch.Generator().manual_seed(0))
    fetched = [[ds[i]["input_ids"] for i in range(len(ds))] for _ in range(20)]
    dropped = [sum(f[i] == alone[i] for f in fetched) for i in range(40)]
    assert all(f[i] in (alone[i], ds.items[i]["input_ids"]) for f in fetched for i in range(40))
    assert 0.35 < sum(dropped) / (20 * 40) < 0.65  # about half of the draws
    assert all(f[-1] == alone[-1] for f in fetched)
    ds.set_context_dropout(0.5, torch.Generator().manual_seed(0))  # the same generator state: the same draws
    assert [[ds[i]["input_ids"] for i in range(len(ds))] for _ in range(20)] == fetched


def test_context_dropout_trains_resumes_and_is_checked(tmp_path, monkeypatch):
    """A run with context dropout killed after epoch 1 of 2 and resumed ends where an
    uninterrupted run ends: the draws come from the training generator, saved with the state."""
    corpus = make_corpus(24, text_only=True)
    over = {**TINY, "epochs": 2, "patience": 10, "context": 1, "max_context_len": 16, "context_dropout": 0.3}
    cfg = load_config("quick", ablation="language_only", overrides=over)
    train(corpus, cfg, tmp_path / "run", progress=False)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["context_dropout"] == 0.3
    train_until_killed(monkeypatch, corpus, cfg, tmp_path / "resumed", at_save=1)
    train(corpus, cfg, tmp_path / "resumed", resume=True, progress=False)
    a = Predictor.load(tmp_path / "run").predict_clips(corpus.split("valid"))["multimodal"]
    b = Predictor.load(tmp_path / "resumed").predict_clips(corpus.split("valid"))["multimodal"]
    np.testing.assert_allclose(a, b, atol=1e-5)
    # and it is not a no-op: without it the same seed trains another model
    plain = load_config("quick", ablation="language_only", overrides={**over, "context_dropout": 0.0})
    train(corpus, plain, tmp_path / "plain", progress=False)
    c = Predictor.load(tmp_path / "plain").predict_clips(corpus.split("valid"))["multimodal"]
    assert not np.allclose(a, c)
    for bad in (-0.1, 1.0, True, "half"):
        with pytest.raises(Exception, match="context_dropout"):
            load_config("quick", overrides={"context_dropout": bad})


def test_an_extra_corpus_gives_no_neighbours_to_the_main_one(tmp_path):
    """Two corpora trained together (``extra_train``) that use the same video id: each clip's
    context comes from its own corpus only."""
    from pipeline.corpora.load import load_corpus
    from pipeline.training.trainer import _training_clips

    rows = {"main": ["good one", "good two", "good three"], "extra": ["bad one", "bad two"]}
    paths = {}
    for name, texts in rows.items():
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text("video_id,clip_id,text,label,mode\n"
                               + "".join(f"shared,{i + 1},{t},0.5,train\n" for i, t in enumerate(texts))
                               + "v,1,held out,0.0,valid\n")
    cfg = load_config("quick", ablation="language_only", overrides={"context": 1})
    cfg.extra_train = [str(paths["extra"])]
    clips = _training_clips(load_corpus(paths["main"]), cfg)
    ctx = {c.text: c.context for c in with_context(clips, 1)}
    assert ctx == {"good one": "after: good two", "good two": "before: good one after: good three",
                   "good three": "before: good two", "bad one": "after: bad two", "bad two": "before: bad one"}
