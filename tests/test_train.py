"""Training layer: overfitting, checkpoints, resume, mismatches, multi-seed summaries."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from common.errors import CheckpointMismatchError, ConfigError, InputError
from model.loss import UncertaintyWeightedLoss, tasks_for
from model.senbert import SenBERT
from pipeline.corpora.clips import Corpus, Normalizer
from pipeline.models.checkpoint import WEIGHTS_FILE, read_meta
from pipeline.models.dataset import ClipDataset, collate
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import train, train_seeds
from tests.conftest import TINY, make_corpus, train_until_killed


def test_overfits_a_tiny_batch(minilm):
    """The full model, eq. (8) and the optimiser can drive the training error towards zero."""
    torch.manual_seed(0)
    enc, tok, hidden = minilm
    import copy

    cfg = load_config("quick", overrides={**TINY, "model.dropout": 0.0, "model.head_dropout": 0.0,
                                          "model.attn_dropout": 0.0}).model
    cfg.audio_dim, cfg.vision_dim = 5, 7
    model = SenBERT(cfg, copy.deepcopy(enc), hidden)
    loss_fn = UncertaintyWeightedLoss(tasks_for(cfg))
    corpus = make_corpus(8)
    ds = ClipDataset(corpus.clips, tok, max_text_len=16)
    batch = collate(ds.items, tok.pad_token_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "audio", "audio_mask", "vision", "vision_mask")}
    opt = torch.optim.Adam([{"params": model.encoder_parameters(), "lr": 1e-4},
                            {"params": model.other_parameters() + list(loss_fn.parameters()), "lr": 3e-3}])
    model.train()
    first = None
    for _ in range(150):
        out = model(**inputs)
        loss, _ = loss_fn(out, batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if first is None:
            first = float(torch.nn.functional.l1_loss(out["multimodal"].detach(), batch["labels"]))
    model.eval()
    with torch.no_grad():
        final = float(torch.nn.functional.l1_loss(model(**inputs)["multimodal"], batch["labels"]))
    assert final < 0.15 < first


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    corpus = make_corpus(24)
    out = tmp_path_factory.mktemp("run")
    cfg = load_config("quick", overrides=TINY)
    res = train(corpus, cfg, out / "r", progress=False)
    return corpus, res


def test_run_outputs(trained_run):
    corpus, res = trained_run
    out = res.out_dir
    for f in ("config.yaml", "metrics.jsonl", "result.json", "plots/loss.png", "plots/pred_vs_true.png",
              "checkpoint/model.safetensors", "checkpoint/senbert.json", "checkpoint/encoder/config.json"):
        assert (out / f).exists(), f
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, len(lines) + 1))
    assert {"mae", "corr", "acc7", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0"} <= set(lines[0]["valid"])
    meta = read_meta(out / "checkpoint")
    assert meta.audio_names == corpus.audio_names and meta.vision_names == corpus.vision_names
    assert len(meta.audio_norm["mean"]) == 5 and meta.model["encoder"] == "all-MiniLM-L6-v2"
    assert set(meta.sigmas) == {"multimodal", "language", "sense"}
    assert res.test is not None and np.isfinite(res.test["mae"])


def test_normaliser_uses_train_split_only():
    corpus = make_corpus(24)
    for c in corpus.split("valid"):
        c.audio = c.audio + 1000.0
    norm = Normalizer.fit((c.audio for c in corpus.split("train")), 5)
    assert max(abs(m) for m in norm.mean) < 5


def test_checkpoint_round_trip_gives_identical_predictions(trained_run, tmp_path):
    corpus, res = trained_run
    p1 = Predictor.load(res.checkpoint)
    rows1 = p1.predict_corpus(corpus)
    copy_dir = tmp_path / "copied"
    shutil.copytree(res.checkpoint, copy_dir)
    p2 = Predictor.load(copy_dir)
    rows2 = p2.predict_corpus(corpus)
    assert [r["score"] for r in rows1] == [r["score"] for r in rows2]
    assert [r["score_language"] for r in rows1] == [r["score_language"] for r in rows2]
    assert all(r["score_sense"] is not None for r in rows1)
    # the run directory itself is accepted too
    assert Predictor.load(res.out_dir).predict_corpus(corpus)[0]["score"] == rows1[0]["score"]
    m = p1.evaluate(corpus, "test")
    assert m["n"] == len(corpus.split("test"))


def test_mismatched_feature_dims_refused(trained_run):
    _, res = trained_run
    other = make_corpus(8, d_a=6)
    with pytest.raises(CheckpointMismatchError, match="6"):
        Predictor.load(res.checkpoint).predict_corpus(other)


def test_mismatched_feature_names_refused(trained_run):
    _, res = trained_run
    other = make_corpus(8)
    other.vision_names = list(reversed(other.vision_names))
    with pytest.raises(CheckpointMismatchError, match="order or with other names"):
        Predictor.load(res.checkpoint).predict_corpus(other)


def test_text_only_corpus_refused_by_multimodal_checkpoint(trained_run):
    _, res = trained_run
    with pytest.raises(CheckpointMismatchError, match="language_only"):
        Predictor.load(res.checkpoint).predict_corpus(make_corpus(4, text_only=True))


def test_weights_that_do_not_fit_the_config_are_refused(trained_run, tmp_path):
    _, res = trained_run
    bad = tmp_path / "bad"
    shutil.copytree(res.checkpoint, bad)
    meta = json.loads((bad / "senbert.json").read_text())
    meta["model"]["d_model"] = 32
    meta["model"]["num_heads"] = 4
    (bad / "senbert.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointMismatchError, match="do not fit"):
        Predictor.load(bad)
    (bad / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointMismatchError):
        Predictor.load(bad)
    with pytest.raises(InputError, match="not a SenBERT checkpoint"):
        Predictor.load(tmp_path)


def test_resume_continues_and_matches(tmp_path, monkeypatch):
    """A run killed after epoch 2 of 3 and resumed ends where an uninterrupted run ends."""
    corpus = make_corpus(16)
    overrides = {**TINY, "epochs": 3, "patience": 10}
    full = train(corpus, load_config("quick", overrides=overrides), tmp_path / "full", progress=False)
    train_until_killed(monkeypatch, corpus, load_config("quick", overrides=overrides), tmp_path / "resumed")
    with pytest.raises(ConfigError, match="--resume"):
        train(corpus, load_config("quick", overrides=overrides), tmp_path / "resumed", progress=False)
    resumed = train(corpus, load_config("quick", overrides=overrides), tmp_path / "resumed", resume=True,
                    progress=False)
    a = json.loads((tmp_path / "full" / "result.json").read_text())
    b = json.loads((tmp_path / "resumed" / "result.json").read_text())
    assert a["epochs_run"] == b["epochs_run"] == 3
    assert a["valid"]["mae"] == pytest.approx(b["valid"]["mae"], abs=1e-5)
    assert full.best_epoch == resumed.best_epoch
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    # a finished run drops its resume state (keep_state: false) and says so when asked to resume
    assert not (tmp_path / "full" / "state").exists() and (tmp_path / "full" / "checkpoint").is_dir()
    with pytest.raises(ConfigError, match="resume state was removed"):
        train(corpus, load_config("quick", overrides=overrides), tmp_path / "full", resume=True, progress=False)


def test_keep_state_lets_a_finished_run_be_extended(tmp_path):
    corpus = make_corpus(16)
    one = train(corpus, load_config("quick", overrides={**TINY, "epochs": 1, "keep_state": True}),
                tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "state" / "last.pt").exists() and one.best_epoch == 1
    more = train(corpus, load_config("quick", overrides={**TINY, "epochs": 3, "patience": 10, "keep_state": True}),
                 tmp_path / "r", resume=True, progress=False)
    history = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # the finished run had decayed to 0 (the rate after its last step); the extension restarts above 0
    # (stated in the log), or it would train nothing, and decays to 0 again at its own end
    assert max(history[0]["lr"]) == 0 and min(history[1]["lr"]) > 0 and max(history[2]["lr"]) == 0
    assert json.loads((tmp_path / "r" / "result.json").read_text())["epochs_run"] == 3
    assert more.best_epoch >= 1


def test_sense_variant_on_text_only_corpus_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="language_only"):
        train(make_corpus(8, text_only=True), load_config("quick", overrides=TINY), tmp_path / "x", progress=False)


def test_language_only_on_text_with_empty_rows(tmp_path):
    corpus = make_corpus(16, text_only=True)
    corpus.clips[0].text = ""
    corpus.clips[5].text = ""
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1})
    res = train(corpus, cfg, tmp_path / "lo", progress=False)
    rows = Predictor.load(res.checkpoint).predict_corpus(corpus)
    assert len(rows) == 16 and rows[0]["score_sense"] is None
    assert rows[0]["score"] == rows[0]["score_language"]


def test_multi_seed_summary_and_reuse(tmp_path):
    corpus = make_corpus(12, text_only=True)
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1})
    s = train_seeds(corpus, cfg, tmp_path / "seeds", [1, 2], progress=False)
    assert s["valid"]["mae"]["n"] == 2 and s["valid"]["mae"]["std"] >= 0
    assert "±" in (tmp_path / "seeds" / "summary.md").read_text()
    per = {k: v["valid"]["mae"] for k, v in s["per_seed"].items()}
    assert s["valid"]["mae"]["std"] == pytest.approx(float(np.std(list(per.values()), ddof=1)))  # sample std
    assert s["valid"]["mae"]["mean"] == pytest.approx(float(np.mean(list(per.values()))))
    assert s["best_seed"]["seed"] == int(min(per, key=per.get))
    assert s["best_seed"]["checkpoint"].endswith(f"seed_{s['best_seed']['seed']}/checkpoint")
    mtime = (tmp_path / "seeds" / "seed_1" / "result.json").stat().st_mtime
    train_seeds(corpus, cfg, tmp_path / "seeds", [1, 2], progress=False)  # finished seeds are not redone
    assert (tmp_path / "seeds" / "seed_1" / "result.json").stat().st_mtime == mtime


def test_unlabelled_train_clip_is_refused(tmp_path):
    corpus: Corpus = make_corpus(8, text_only=True)
    corpus.clips[0].label = None
    cfg = load_config("quick", ablation="language_only", overrides=TINY)
    with pytest.raises(InputError, match="no label"):
        train(corpus, cfg, tmp_path / "u", progress=False)


def test_features_made_at_another_frame_rate_are_refused(tmp_path):
    corpus = make_corpus(12)
    corpus.feature_info = {"extract_config": "default", "visual_fps": 10.0, "acoustic_rate_hz": 50.0}
    res = train(corpus, load_config("quick", overrides={**TINY, "epochs": 1}), tmp_path / "r", progress=False)
    assert read_meta(res.checkpoint).feature_info["visual_fps"] == 10.0
    other = make_corpus(4)
    other.feature_info = {"extract_config": "fast", "visual_fps": 5.0, "acoustic_rate_hz": 25.0}
    with pytest.raises(CheckpointMismatchError, match="visual frame rate of 10.0 Hz"):
        Predictor.load(res.checkpoint).predict_corpus(other)
    other.feature_info = {}
    assert len(Predictor.load(res.checkpoint).predict_corpus(other)) == 4  # unknown rates: names decide
