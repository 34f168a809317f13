"""The auxiliary ordinal head (``model.ordinal_weight``): its logits, its loss, and a run with it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from model.config import ModelConfig
from model.loss import UncertaintyWeightedLoss, tasks_for
from model.senbert import ORDINAL_THRESHOLDS
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import train, train_seeds
from tests.conftest import SENTENCES, TINY, make_corpus
from tests.test_model import build, make_inputs, tiny_cfg


@pytest.mark.parametrize("variant", ["full", "language_only", "sense_only"])
def test_ordinal_logits_in_training_mode_only(minilm, variant):
    model = build(minilm, variant=variant, ordinal_weight=0.5)
    x = make_inputs(minilm[1], ["good movie", "bad", "it was fine"], [4, 9, 6], [3, 5, 11])
    out = model.train()(**x)
    assert out["ordinal"].shape == (3, len(ORDINAL_THRESHOLDS))
    assert torch.isfinite(out["ordinal"]).all()
    assert "ordinal" not in model.eval()(**x)  # inference never reads it
    # one shared direction: the logits of one clip differ only by the (ordered) biases
    diffs = out["ordinal"] - model.ordinal_head.bias
    assert torch.allclose(diffs, diffs[:, :1].expand_as(diffs), atol=1e-5)
    assert torch.all(model.ordinal_head.bias[:-1] > model.ordinal_head.bias[1:])


def test_no_ordinal_head_by_default(minilm):
    model = build(minilm)
    assert not hasattr(model, "ordinal_head")
    assert "ordinal" not in model.train()(**make_inputs(minilm[1], ["ok"], [3], [4]))


def test_ordinal_weight_is_checked():
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="ordinal_weight"):
            tiny_cfg(ordinal_weight=bad)


def test_ordinal_loss_matches_hand_computation():
    labels = torch.tensor([-3.0, 0.0, 0.5, 2.6])
    logits = torch.linspace(-2.0, 2.0, 24).view(4, 6)
    fn = UncertaintyWeightedLoss(["language"], ordinal_weight=0.5)
    total, parts = fn({"language": labels + 1.0, "ordinal": logits}, labels)
    # targets: is the label above -2.5, -1.5, -0.5, 0.5, 1.5, 2.5?  (0.5 is not above 0.5)
    above = [[0] * 6, [1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1] * 6]
    bce = 0.0
    for i in range(4):
        for k in range(6):
            p = 1 / (1 + math.exp(-float(logits[i, k])))
            bce -= math.log(p) if above[i][k] else math.log(1 - p)
    bce /= 24
    assert parts["ordinal"].item() == pytest.approx(bce, rel=1e-5)
    assert total.item() == pytest.approx(1.0 + 0.5 * bce, rel=1e-5)  # L1 1.0, plain with one task
    with pytest.raises(ValueError, match="no ordinal logits"):
        fn({"language": labels}, labels)
    assert set(UncertaintyWeightedLoss(["language"])({"language": labels, "ordinal": logits}, labels)[1]) == {
        "language"}  # weight 0: the term is off even if logits are there


def test_ordinal_term_trains_the_shared_representation(minilm):
    """The ordinal term alone sends gradients into the head and the blocks below it."""
    model = build(minilm, ordinal_weight=1.0).train()
    cfg: ModelConfig = model.cfg
    fn = UncertaintyWeightedLoss(tasks_for(cfg), cfg.ordinal_weight)
    x = make_inputs(minilm[1], ["great", "awful"], [4, 5], [3, 6])
    out = model(**x)
    _, parts = fn(out, torch.tensor([2.8, -2.2]))
    assert parts["ordinal"] > 0
    labels = torch.tensor([2.8, -2.2])
    above = (labels.unsqueeze(-1) > torch.tensor(ORDINAL_THRESHOLDS)).float()
    torch.nn.functional.binary_cross_entropy_with_logits(out["ordinal"], above).backward()
    assert model.ordinal_head.proj.weight.grad.abs().sum() > 0
    for block in (model.multimodal, model.sense, model.language):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    assert model.multimodal_head[1].weight.grad is None  # the regression head is not touched by it


def test_a_run_with_the_ordinal_term_logs_it_saves_the_head_and_predicts(tmp_path):
    corpus = make_corpus(16, text_only=True)
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "model.ordinal_weight": 1.0})
    train(corpus, cfg, tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(rec["train_bce_ordinal"] > 0 for rec in lines)
    weights = load_file(str(tmp_path / "run" / "checkpoint" / "model.safetensors"))
    assert any(k.startswith("ordinal_head.") for k in weights)
    pred = Predictor.load(tmp_path / "run" / "checkpoint")
    assert pred.model.cfg.ordinal_weight == 1.0
    out = pred.predict_clips([c for c in corpus.split("valid")])
    assert set(out) >= {"multimodal"} and "ordinal" not in out
    assert all(math.isfinite(v) for v in out["multimodal"])


def test_the_preliminary_stage_has_no_ordinal_term(tmp_path):
    """The stage is shared by every main-stage variant, so it trains without the auxiliary head."""
    cfg = load_config("quick", ablation="language_only",
                      overrides={**TINY, "epochs": 1, "pretrain": [str(SENTENCES)], "pretrain_epochs": 1,
                                 "model.ordinal_weight": 1.0})
    train_seeds(make_corpus(12, text_only=True), cfg, tmp_path / "runs", [1], progress=False)
    stage = load_file(str(tmp_path / "runs" / "pretrain" / "checkpoint" / "model.safetensors"))
    seed = load_file(str(tmp_path / "runs" / "seed_1" / "checkpoint" / "model.safetensors"))
    assert not any(k.startswith("ordinal_head.") for k in stage)
    assert any(k.startswith("ordinal_head.") for k in seed)
