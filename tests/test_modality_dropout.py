"""Modality dropout (``modality_dropout``): training batches lose a modality per clip and step,
as an extracted clip with a masked stream does; validation and prediction never do."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from common.errors import ConfigError
from model.loss import UncertaintyWeightedLoss, tasks_for
from model.senbert import SenBERT
from pipeline.models.dataset import ClipDataset, collate
from pipeline.models.inference import batch_to_inputs
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import drop_modalities, train
from tests.conftest import TINY, make_corpus, train_until_killed


@pytest.mark.parametrize("value", [1.0, 1, 1.5, -0.1, "half", True, None, {"audio": 1.0}, {"vision": 2},
                                   {"face": 0.1}])
def test_probabilities_outside_zero_to_one_are_a_config_error(value):
    with pytest.raises(ConfigError, match="modality_dropout"):
        load_config("quick", overrides={"modality_dropout": value})


def test_a_number_applies_to_audio_and_vision():
    assert load_config("quick").modality_dropout_probs() == {"audio": 0.0, "vision": 0.0, "text": 0.0}
    assert load_config("quick", overrides={"modality_dropout": 0.25}).modality_dropout_probs() == \
        {"audio": 0.25, "vision": 0.25, "text": 0.0}
    assert load_config("quick", overrides={"modality_dropout": {"text": 0.1, "vision": 0.5}}).modality_dropout_probs() \
        == {"audio": 0.0, "vision": 0.5, "text": 0.1}


def test_half_of_the_clips_lose_a_modality_and_the_loss_stays_finite(minilm):
    enc, tok, hidden = minilm
    corpus = make_corpus(32)
    batch = collate(ClipDataset(corpus.clips, tok, max_text_len=16).items, tok.pad_token_id)
    probs = {"audio": 0.5, "vision": 0.5, "text": 0.5}
    empty = list(tok("")["input_ids"])
    assert empty == [tok.cls_token_id, tok.sep_token_id]
    out = drop_modalities(batch, probs, torch.Generator().manual_seed(0), empty, tok.pad_token_id)
    again = drop_modalities(batch, probs, torch.Generator().manual_seed(0), empty, tok.pad_token_id)
    assert all(torch.equal(out[k], again[k]) for k in ("audio_mask", "vision_mask", "input_ids"))  # reproducible
    for kind in ("audio", "vision"):
        dropped = ~out[f"{kind}_mask"].any(1)
        assert 0 < int(dropped.sum()) < 32, kind  # some clips, not all
        assert not out[kind][dropped].any()  # a dropped sequence is all padding
        kept = ~dropped
        assert torch.equal(out[kind][kept], batch[kind][kept])
        assert torch.equal(out[f"{kind}_mask"][kept], batch[f"{kind}_mask"][kept])
        assert batch[f"{kind}_mask"].any(1).all()  # the batch given is left as it was
    text_dropped = out["attention_mask"].sum(1) == 2
    assert 0 < int(text_dropped.sum()) < 32
    for i in torch.nonzero(text_dropped).flatten().tolist():
        assert out["input_ids"][i, :2].tolist() == empty and not out["attention_mask"][i, 2:].any()
    assert torch.equal(out["labels"], batch["labels"])
    # a training step on it: finite
    cfg = load_config("quick", overrides=TINY).model
    cfg.audio_dim, cfg.vision_dim = 5, 7
    model = SenBERT(cfg, copy.deepcopy(enc), hidden).train()
    loss, _ = UncertaintyWeightedLoss(tasks_for(cfg))(model(**batch_to_inputs(out, torch.device("cpu"))),
                                                      out["labels"])
    assert torch.isfinite(loss)
    loss.backward()
    # probability 0 everywhere: the very same batch, and nothing drawn from the generator
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    same = drop_modalities(batch, {"audio": 0.0, "vision": 0.0, "text": 0.0}, g)
    assert same.keys() == batch.keys() and all(same[k] is batch[k] for k in batch)
    assert torch.equal(g.get_state(), state)


def _weights(run):
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def test_zero_dropout_trains_exactly_as_without_the_option(tmp_path):
    corpus = make_corpus(12)
    over = {**TINY, "epochs": 2, "patience": 5, "precision": "fp32"}
    train(corpus, load_config("quick", overrides=over), tmp_path / "plain", progress=False)
    train(corpus, load_config("quick", overrides={**over, "modality_dropout": {"audio": 0.0, "vision": 0.0,
                                                                                "text": 0.0}}),
          tmp_path / "zero", progress=False)
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "zero")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_with_dropout_is_reproducible_and_never_drops_at_validation(tmp_path):
    corpus = make_corpus(12)
    over = {**TINY, "epochs": 2, "patience": 5, "precision": "fp32",
            "modality_dropout": {"audio": 0.5, "vision": 0.5, "text": 0.3}}
    res = train(corpus, load_config("quick", overrides=over), tmp_path / "a", progress=False)
    train(corpus, load_config("quick", overrides=over), tmp_path / "b", progress=False)
    hist = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in hist)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same seed: the same drops
    plain = train(corpus, load_config("quick", overrides={**over, "modality_dropout": 0.0}), tmp_path / "c",
                  progress=False)
    assert not all(torch.equal(a[k], _weights(tmp_path / "c")[k]) for k in a)  # the drops did change training
    assert plain.valid["mae"] != res.valid["mae"]
    # the checkpoint predicts on valid (no dropout) exactly what training selected on
    m = Predictor.load(res.checkpoint).evaluate(corpus, "valid")
    assert m["mae"] == pytest.approx(res.valid["mae"], abs=1e-6)
    assert "modality_dropout" in (tmp_path / "a" / "config.yaml").read_text()


def test_a_resumed_run_with_dropout_ends_where_an_uninterrupted_one_ends(tmp_path, monkeypatch):
    """The drops come from the training generator, which the resume state saves."""
    corpus = make_corpus(12)
    over = {**TINY, "epochs": 3, "patience": 5, "precision": "fp32", "modality_dropout": {"audio": 0.5, "text": 0.3}}
    train(corpus, load_config("quick", overrides=over), tmp_path / "full", progress=False)
    train_until_killed(monkeypatch, corpus, load_config("quick", overrides=over), tmp_path / "resumed")
    train(corpus, load_config("quick", overrides=over), tmp_path / "resumed", resume=True, progress=False)
    full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in resumed] == [h["epoch"] for h in full] == [1, 2, 3]
    assert [h["train_loss"] for h in resumed] == pytest.approx([h["train_loss"] for h in full], abs=1e-6)
    assert resumed[-1]["valid"]["mae"] == pytest.approx(full[-1]["valid"]["mae"], abs=1e-6)
