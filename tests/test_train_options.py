"""Training options of the language benchmark: length-grouped batches, bf16 autocast, fused Adam,
and the preliminary-corpus stage (``pretrain``)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from common.errors import ConfigError, InputError
from model.loss import UncertaintyWeightedLoss, tasks_for
from model.senbert import SenBERT
from pipeline.models.dataset import LengthGroupedBatches
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import build_optimizer, train, train_seeds
from tests.conftest import SENTENCES, TINY, make_corpus


def test_length_grouped_batches_cover_every_clip_once_with_little_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (1000,), generator=g).tolist()
    sampler = LengthGroupedBatches(lengths, batch_size=32, generator=torch.Generator().manual_seed(3), pool=10)
    first = list(sampler)
    second = list(sampler)
    assert len(first) == len(sampler) == 32  # ceil(1000 / 32)
    for epoch in (first, second):
        flat = sorted(i for b in epoch for i in b)
        assert flat == list(range(1000))
    assert first != second  # a new order every epoch

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    random_batches = [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]
    assert padding(first) < 0.2 * padding(random_batches)
    again = list(LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(3), pool=10))
    assert again == first  # deterministic for a generator state (resume)


def test_bf16_length_grouped_training_of_the_full_model(tmp_path):
    corpus = make_corpus(24)
    cfg = load_config("quick", overrides={**TINY, "epochs": 2, "patience": 5, "precision": "bf16",
                                          "group_by_length": True})
    res = train(corpus, cfg, tmp_path / "bf16", progress=False)
    hist = [json.loads(x) for x in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["train_loss"])) for h in hist)
    # the checkpoint holds fp32 weights and predicts (in fp32) what training selected on valid
    weights = load_file(str(res.checkpoint / "model.safetensors"))
    assert all(w.dtype == torch.float32 for w in weights.values())
    m = Predictor.load(res.checkpoint).evaluate(corpus, "valid")
    assert m["mae"] == pytest.approx(res.valid["mae"], abs=1e-6)


def test_precision_is_checked():
    with pytest.raises(ConfigError, match="precision"):
        load_config("quick", overrides={"precision": "fp16"})


def test_optimizer_is_fused_adam_on_cpu(minilm):
    import copy

    enc, _, hidden = minilm
    cfg = load_config("quick", ablation="language_only", overrides=TINY)
    model = SenBERT(cfg.model, copy.deepcopy(enc), hidden)
    opt, _ = build_optimizer(model, UncertaintyWeightedLoss(tasks_for(cfg.model)), cfg, total_steps=10)
    assert opt.defaults.get("fused") is True


def test_pretrain_stage_runs_once_and_initialises_every_seed(tmp_path):
    """With learning rates 0 in the main stage, each seed's model is exactly the stage's model."""
    corpus = make_corpus(12, text_only=True)
    cfg = load_config("quick", ablation="language_only",
                      overrides={**TINY, "epochs": 1, "pretrain": [str(SENTENCES)], "pretrain_epochs": 1,
                                 "lr_encoder": 0.0, "lr_other": 0.0})
    train_seeds(corpus, cfg, tmp_path / "runs", [1, 2], progress=False)
    stage = tmp_path / "runs" / "pretrain"
    assert json.loads((stage / "result.json").read_text())["epochs_run"] == 1
    stage_w = load_file(str(stage / "checkpoint" / "model.safetensors"))
    for seed in (1, 2):
        seed_w = load_file(str(tmp_path / "runs" / f"seed_{seed}" / "checkpoint" / "model.safetensors"))
        assert seed_w.keys() == stage_w.keys()
        assert all(torch.equal(seed_w[k], stage_w[k]) for k in stage_w)
        run_cfg = (tmp_path / "runs" / f"seed_{seed}" / "config.yaml").read_text()
        assert str(stage / "checkpoint") in run_cfg
    mtime = (stage / "result.json").stat().st_mtime
    train_seeds(corpus, cfg, tmp_path / "runs", [1, 2, 3], progress=False)  # the stage is reused
    assert (stage / "result.json").stat().st_mtime == mtime


def test_missing_pretrain_corpus_is_named_before_anything_runs(tmp_path):
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "pretrain": ["/nope/mosei.csv"]})
    with pytest.raises(InputError, match="pretrain corpus /nope/mosei.csv"):
        train(make_corpus(8, text_only=True), cfg, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
