"""Training state: seeding around the preliminary stage, the learning-rate schedule and the RNG
state across a resume, and the caller's config left as it was."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.training.config import load_config
from pipeline.training.trainer import Schedule, state_path, train, train_seeds
from tests.conftest import SENTENCES, TINY, make_corpus


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def test_main_stage_draws_the_same_stream_whether_the_stage_ran_in_process_or_was_reused(tmp_path):
    """A single --pretrain run (the stage trains in this process), train_seeds (stage once, then
    the seed) and a run that reuses the finished stage give the same model for the same seed."""
    corpus = make_corpus(12, text_only=True)
    over = {**TINY, "epochs": 1, "pretrain": [str(SENTENCES)], "pretrain_epochs": 1, "precision": "fp32"}
    cfg = load_config("quick", ablation="language_only", overrides=over)
    one = train(corpus, cfg, tmp_path / "one", progress=False)
    stage = tmp_path / "one" / "pretrain" / "checkpoint"
    reused = train(corpus, load_config("quick", ablation="language_only",
                                       overrides={**over, "init_from": str(stage)}), tmp_path / "reused",
                   progress=False)
    train_seeds(corpus, cfg, tmp_path / "seeds", [cfg.seed], progress=False)
    w_one, w_reused = _weights(tmp_path / "one"), _weights(tmp_path / "reused")
    w_seed = _weights(tmp_path / "seeds" / f"seed_{cfg.seed}")
    assert all(torch.equal(w_one[k], w_reused[k]) for k in w_one)
    assert all(torch.equal(w_one[k], w_seed[k]) for k in w_one)
    assert one.valid["mae"] == reused.valid["mae"]


def test_schedule_extension_continues_from_the_current_rate():
    s = Schedule.for_steps(100, 0.1)
    assert s.factor(0) == pytest.approx(0.1) and s.factor(9) == pytest.approx(1.0)
    assert s.factor(55) == pytest.approx(0.5)
    ext = s.extended(50, 200)
    assert ext.factor(50) == pytest.approx(s.factor(50))  # no jump at the resume step
    assert ext.factor(125) == pytest.approx(s.factor(50) / 2)
    assert ext.factor(200) == 0.0
    assert ext.extended(120, 300).factor(120) == pytest.approx(ext.factor(120))


def test_resume_with_more_epochs_keeps_the_learning_rate_continuous(tmp_path, monkeypatch):
    """An interrupted run resumed with more epochs (10 -> 20) used to rebuild the schedule from the
    new total: the rate jumped back up. It now decays on from the rate it had."""
    import pipeline.training.trainer as train_mod

    corpus = make_corpus(16, text_only=True)
    over = {**TINY, "epochs": 4, "patience": 10, "precision": "fp32", "warmup_ratio": 0.0}
    cfg = load_config("quick", ablation="language_only", overrides=over)
    run = tmp_path / "run"
    save, calls = train_mod._save_state, []

    def stop_after_two(*a, **k):
        save(*a, **k)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted after epoch 2 of 4

    monkeypatch.setattr(train_mod, "_save_state", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(corpus, cfg, run, progress=False)
    monkeypatch.setattr(train_mod, "_save_state", save)
    rates = [h["lr"][0] for h in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert len(rates) == 2 and 0 < rates[1] < rates[0]
    longer = load_config("quick", ablation="language_only", overrides={**over, "epochs": 6})
    train(corpus, longer, run, resume=True, progress=False)
    after = [h["lr"][0] for h in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert after[:2] == rates and len(after) == 6
    assert all(b < a for a, b in zip(after[1:], after[2:-1]))  # no jump up: on down from where it was
    assert after[-1] == 0.0
    # each resumed epoch takes the same share of what was left: linear from the resume step to the end
    assert after[2] == pytest.approx(rates[1] * 3 / 4)


def test_resume_state_saves_and_restores_the_cuda_rng(tmp_path, monkeypatch):
    """Without a GPU here, CUDA's generator calls are replaced by recorders."""
    saved_state = [torch.tensor([7, 7, 7], dtype=torch.uint8)]
    restored: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    corpus = make_corpus(8, text_only=True)
    over = {**TINY, "epochs": 1, "patience": 5, "precision": "fp32", "keep_state": True}
    run = tmp_path / "run"
    train(corpus, load_config("quick", ablation="language_only", overrides=over), run, progress=False)
    st = torch.load(state_path(run), weights_only=False)
    assert torch.equal(st["cuda_rng"][0], saved_state[0])
    more = {**over, "epochs": 2}
    train(corpus, load_config("quick", ablation="language_only", overrides=more), run, resume=True, progress=False)
    assert restored and torch.equal(restored[0][0], saved_state[0])


def test_train_leaves_the_callers_config_unchanged(tmp_path):
    corpus = make_corpus(12)
    cfg = load_config("quick", overrides={**TINY, "epochs": 1})
    before = copy.deepcopy(cfg.to_dict())
    train(corpus, cfg, tmp_path / "run", progress=False)
    assert cfg.to_dict() == before
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "audio_dim: 5" in saved and "vision_dim: 7" in saved  # what the run used
    assert "precision: auto" not in saved  # resolved



def test_a_resume_with_no_saved_state_starts_a_fresh_log(tmp_path):
    """A run that crashed before its first state was saved left epoch lines behind; --resume starts
    over and its log must not keep them (it read epochs [1, 1, 2])."""
    corpus = make_corpus(12, text_only=True)
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 2, "precision": "fp32"})
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "stale": True}) + "\n")
    train(corpus, cfg, run, resume=True, progress=False)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in lines] == [1, 2] and not any(h.get("stale") for h in lines)


def test_a_resume_with_other_settings_or_other_clips_is_refused(tmp_path, monkeypatch):
    """The state continues the run it was saved from: another learning rate (which the restored
    optimiser would silently drop), seed or corpus is refused, naming what differs, before
    config.yaml is written over; the settings a resume may change still may."""
    from common.errors import ConfigError
    from tests.conftest import train_until_killed

    corpus = make_corpus(12, text_only=True)
    over = {**TINY, "epochs": 3, "patience": 3, "precision": "fp32"}
    cfg = load_config("quick", ablation="language_only", overrides=over)
    run = tmp_path / "run"
    train_until_killed(monkeypatch, corpus, cfg, run)  # dies in epoch 2, the state of epoch 1 saved
    assert state_path(run).exists()
    before = (run / "config.yaml").read_text()
    other = load_config("quick", ablation="language_only", overrides={**over, "lr_other": 5e-3})
    with pytest.raises(ConfigError, match=r"other settings than this resume: lr_other 0\.001 -> 0\.005"):
        train(corpus, other, run, resume=True, progress=False)
    reseeded = load_config("quick", ablation="language_only", overrides={**over, "seed": 7})
    with pytest.raises(ConfigError, match="seed"):
        train(corpus, reseeded, run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="other training clips"):
        train(make_corpus(14, text_only=True), cfg, run, resume=True, progress=False)
    # the same training clips, another valid split: it chose the best epoch so far
    moved = make_corpus(12, text_only=True)
    for c in moved.clips:
        if c.split == "valid":
            c.label = -(c.label or 0.5)
    with pytest.raises(ConfigError, match=r"other valid clips \(which choose its best epoch\)"):
        train(moved, cfg, run, resume=True, progress=False)
    assert (run / "config.yaml").read_text() == before
    longer = load_config("quick", ablation="language_only", overrides={**over, "epochs": 4, "patience": 4})
    res = train(corpus, longer, run, resume=True, progress=False)
    assert res.best_epoch >= 1 and not state_path(run).exists() and not (run / "state" / "run.json").exists()


def test_a_non_finite_step_changes_nothing_and_an_epoch_of_them_stops_the_run(tmp_path, monkeypatch):
    import math

    from common.errors import ConfigError
    from model.loss import UncertaintyWeightedLoss

    corpus = make_corpus(48, text_only=True)  # 24 training clips: 3 steps of 8
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1, "precision": "fp32"})
    real = UncertaintyWeightedLoss.forward
    calls = {"n": 0}

    def nan_every_other(self, outputs, labels):
        total, parts = real(self, outputs, labels)
        calls["n"] += 1
        return (total * float("nan") if calls["n"] % 2 else total), parts

    monkeypatch.setattr(UncertaintyWeightedLoss, "forward", nan_every_other)
    train(corpus, cfg, tmp_path / "run", progress=False)
    (rec,) = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rec["train_skipped_steps"] >= 1 and math.isfinite(rec["train_loss"])
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "run").values())  # nothing NaN was stepped
    monkeypatch.setattr(UncertaintyWeightedLoss, "forward",
                        lambda self, o, y: (real(self, o, y)[0] * float("nan"), real(self, o, y)[1]))
    with pytest.raises(ConfigError, match="every step had a non-finite loss"):
        train(corpus, cfg, tmp_path / "run2", progress=False)
    # a finite loss whose gradient is not finite (sqrt at 0), with gradient clipping off: skipped too
    calls["n"] = 0

    def nan_gradient_every_other(self, outputs, labels):
        total, parts = real(self, outputs, labels)
        calls["n"] += 1
        if calls["n"] % 2:
            total = total + torch.sqrt((next(iter(outputs.values())) * 0).sum())
        return total, parts

    monkeypatch.setattr(UncertaintyWeightedLoss, "forward", nan_gradient_every_other)
    no_clip = load_config("quick", ablation="language_only",
                          overrides={**TINY, "epochs": 1, "precision": "fp32", "grad_clip": 0})
    train(corpus, no_clip, tmp_path / "run3", progress=False)
    (rec,) = [json.loads(x) for x in (tmp_path / "run3" / "metrics.jsonl").read_text().splitlines()]
    assert rec["train_skipped_steps"] >= 1 and math.isfinite(rec["train_loss"])
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "run3").values())


def test_an_adapter_runs_state_leaves_out_the_frozen_encoder_and_resumes_to_the_same_model(tmp_path, monkeypatch):
    """A LoRA run's resume state holds what it trains, not the 100+ MB base encoder (the packaged
    one, named in state/run.json); a run stopped after its first epoch and resumed ends with the
    model of a run that was never stopped."""
    import pipeline.training.trainer as train_mod

    corpus = make_corpus(16, text_only=True)
    over = {**TINY, "epochs": 2, "patience": 10, "precision": "fp32", "model.adapter": "lora",
            "model.variant": "language_only", "keep_state": True}
    cfg = load_config("quick", overrides=over)
    whole = train(corpus, cfg, tmp_path / "whole", progress=False)
    state = torch.load(state_path(tmp_path / "whole"), map_location="cpu", weights_only=False)["model"]
    base = [k for k in state if k.startswith("language.encoder.") and ".lora_" not in k]
    assert not base and any(".lora_A." in k for k in state) and "language_head.1.weight" in state

    save = train_mod._save_state

    def save_then_stop(*a, **k):
        save(*a, **k)
        raise KeyboardInterrupt  # the machine went away after the first epoch's state was written

    monkeypatch.setattr(train_mod, "_save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(corpus, cfg, tmp_path / "stopped", progress=False)
    monkeypatch.setattr(train_mod, "_save_state", save)
    resumed = train(corpus, cfg, tmp_path / "stopped", resume=True, progress=False)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "stopped")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.valid["mae"] == whole.valid["mae"]
    # a state that does not fit the model is refused by name, not loaded partly
    bad = torch.load(state_path(tmp_path / "stopped"), map_location="cpu", weights_only=False)
    bad["model"] = {k: v for k, v in bad["model"].items() if ".lora_A." not in k}
    torch.save(bad, state_path(tmp_path / "stopped"))
    from common.errors import ConfigError
    with pytest.raises(ConfigError, match="this resume state does not fit the model"):
        train(corpus, load_config("quick", overrides={**over, "epochs": 3}), tmp_path / "stopped", resume=True,
              progress=False)


def test_a_finished_seed_or_stage_is_reused_only_with_the_settings_it_was_trained_with(tmp_path):
    """train_seeds reuses finished runs (and the preliminary stage) instead of training them again:
    one of other settings is refused by name, not mixed in; how it computed may differ."""
    from common.errors import ConfigError

    corpus = make_corpus(12, text_only=True)
    over = {**TINY, "epochs": 1, "pretrain": [str(SENTENCES)], "pretrain_epochs": 1, "precision": "fp32"}
    cfg = load_config("quick", ablation="language_only", overrides=over)
    train_seeds(corpus, cfg, tmp_path / "seeds", [1], progress=False)
    before = (tmp_path / "seeds" / "seed_1" / "result.json").stat().st_mtime
    same = load_config("quick", ablation="language_only", overrides={**over, "num_threads": 1, "eval_batch_size": 7})
    train_seeds(corpus, same, tmp_path / "seeds", [1], progress=False)  # reused: only how it computes differs
    assert (tmp_path / "seeds" / "seed_1" / "result.json").stat().st_mtime == before
    other_lr = load_config("quick", ablation="language_only", overrides={**over, "lr_other": 0.5})
    with pytest.raises(ConfigError, match=r"pretrain is a finished run with other settings than this one: "
                                          r"lr_other 0.001 -> 0.5"):
        train_seeds(corpus, other_lr, tmp_path / "seeds", [1], progress=False)
    longer_main = load_config("quick", ablation="language_only", overrides={**over, "epochs": 2})
    with pytest.raises(ConfigError, match=r"seed_1 is a finished run with other settings than this one: epochs 1 -> 2"):
        train_seeds(corpus, longer_main, tmp_path / "seeds", [1], progress=False)  # the stage fits; the seed not


def test_a_resume_is_refused_on_other_feature_sequences_where_the_model_reads_them(tmp_path, monkeypatch):
    """The same clip ids, labels and transcripts with other acoustic or visual sequences (a corpus
    extracted again with other settings) are other training data for a model with a sense block."""
    from common.errors import ConfigError
    from tests.conftest import train_until_killed

    corpus = make_corpus(12)
    cfg = load_config("quick", ablation="sense_only", overrides={**TINY, "epochs": 3, "patience": 3,
                                                                 "precision": "fp32"})
    run = tmp_path / "run"
    train_until_killed(monkeypatch, corpus, cfg, run)
    for split in ("train", "valid"):
        other = make_corpus(12)
        clip = next(c for c in other.clips if c.split == split)
        clip.audio = clip.audio + 1.0
        with pytest.raises(ConfigError, match=f"other {'training' if split == 'train' else 'valid'} clips"):
            train(other, cfg, run, resume=True, progress=False)
    res = train(make_corpus(12), cfg, run, resume=True, progress=False)
    assert res.best_epoch >= 1


def test_a_resume_with_a_lower_patience_stops_where_a_run_started_with_it_would(tmp_path, monkeypatch):
    """A run with no improving epoch yet (here: none ever counts as better) killed after epoch 2
    and resumed with patience 2 has run out of patience: it trains no third epoch (it did, then
    stopped) and says that no epoch gave a checkpoint."""
    import pipeline.training.trainer as tr
    from common.errors import ConfigError
    from tests.conftest import train_until_killed

    corpus = make_corpus(12, text_only=True)
    over = {**TINY, "epochs": 5, "patience": 4, "precision": "fp32"}
    monkeypatch.setattr(tr, "_better", lambda *a: False)
    run = tmp_path / "run"
    # killed in the 3rd state write, which never lands: the state of epoch 2 is the one on disk
    train_until_killed(monkeypatch, corpus, load_config("quick", ablation="language_only", overrides=over), run,
                       at_save=3)
    lower = load_config("quick", ablation="language_only", overrides={**over, "patience": 2})
    with pytest.raises(ConfigError, match="no valid checkpoint"):
        train(corpus, lower, run, resume=True, progress=False)
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
