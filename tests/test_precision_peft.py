"""Precision that fits the machine (``precision: auto``) and parameter-efficient fine-tuning (LoRA):
what is trained, what a checkpoint stores, and that its base encoder is checked at load."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from common.errors import CheckpointMismatchError
from model.senbert import SenBERT
from pipeline.models import precision
from pipeline.models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint, update_meta
from pipeline.models.encoders import encoder_identity, load_encoder, lora_settings, resolve_encoder
from pipeline.models.precision import Capabilities, resolve_precision
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import train
from tests.conftest import TINY, make_corpus

AVX2 = Capabilities("AMD EPYC (AVX2 only)", frozenset({"avx", "avx2", "fma"}))
ZEN4 = Capabilities("AMD EPYC (Zen 4)", frozenset({"avx2", "avx512f", "avx512_bf16"}))
SPR = Capabilities("Intel Xeon (Sapphire Rapids)", frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"}))


def test_auto_precision_follows_the_hardware():
    assert resolve_precision("auto", "cpu", AVX2) == "fp32"
    assert resolve_precision("auto", "cpu", ZEN4) == "bf16"
    assert resolve_precision("auto", "cpu", SPR) == "bf16"
    assert resolve_precision("auto", "cuda", Capabilities("x", frozenset(), cuda_bf16=True)) == "bf16"
    assert resolve_precision("auto", "cuda", Capabilities("x", frozenset({"amx_bf16"}), cuda_bf16=False)) == "fp32"
    assert resolve_precision("fp32", "cpu", SPR) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu", AVX2)


def test_explicit_bf16_without_native_support_warns_once(caplog, monkeypatch):
    monkeypatch.setattr(precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="pipeline.models.precision"):
        assert resolve_precision("bf16", "cpu", AVX2) == "bf16"
        assert resolve_precision("bf16", "cpu", AVX2) == "bf16"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "26x slower" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.models.precision"):
        resolve_precision("bf16", "cpu", ZEN4)
    assert not caplog.records


def test_every_config_defaults_to_auto_and_the_run_saves_the_choice(tmp_path, monkeypatch):
    for name in ("quick", "default", "paper", "language", "language_lora"):
        assert load_config(name).precision == "auto", name
    monkeypatch.setattr(precision, "capabilities", lambda device="cpu": AVX2)
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1})
    train(make_corpus(8, text_only=True), cfg, tmp_path / "run", progress=False)
    assert "precision: fp32" in (tmp_path / "run" / "config.yaml").read_text()


def _lora_model(encoder: str = "all-MiniLM-L6-v2", variant: str = "language_only", **model_over):
    over = {**TINY, "model.adapter": "lora", "model.encoder": encoder, "model.variant": variant}
    over.update({f"model.{k}": v for k, v in model_over.items()})
    cfg = load_config("quick", overrides=over)
    enc, tok, hidden = load_encoder(cfg.model.encoder, "finetune", lora_settings(cfg.model))
    return cfg, SenBERT(cfg.model, enc, hidden), tok


def test_lora_trains_only_adapters_and_the_rest():
    cfg, model, _ = _lora_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    enc_trainable = {n for n in trainable if n.startswith("language.encoder.")}
    assert enc_trainable and all(".lora_A." in n or ".lora_B." in n for n in enc_trainable)
    assert "language_head.1.weight" in trainable
    assert {id(p) for p in model.encoder_parameters()} == {id(p) for n, p in model.named_parameters()
                                                          if n in enc_trainable}
    # q, k, v (query/key/value), attention output and both feed-forward layers of every layer
    layers = model.language.encoder.config.num_hidden_layers
    assert len([n for n in enc_trainable if n.endswith("lora_A.default.weight")]) == 6 * layers


def test_lora_checkpoint_round_trips_with_identical_predictions(tmp_path):
    cfg, model, tok = _lora_model()
    torch.manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.05)  # lora_B starts at 0: make the adapters matter
    meta = CheckpointMeta(model=cfg.model.to_dict(), train=cfg.to_dict(), max_text_len=16,
                          base_encoder=encoder_identity(cfg.model.encoder))
    save_checkpoint(tmp_path / "ck", model, meta, tok)
    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert not [k for k in stored if k.startswith("language.encoder.") and ".lora_" not in k]
    assert (tmp_path / "ck" / "model.safetensors").stat().st_size < 2_000_000  # MiniLM itself: 90 MB
    batch = tok(["a lovely, moving film", "dull and far too long"], return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        want = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["multimodal"]
    loaded, _, _ = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        got = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["multimodal"]
    assert torch.equal(want, got)
    base_cfg = load_config("quick", overrides={**TINY, "model.variant": "language_only"})
    enc, _, hidden = load_encoder(base_cfg.model.encoder)
    with torch.no_grad():
        plain = SenBERT(base_cfg.model, enc, hidden).eval()
        plain.load_state_dict({k: v for k, v in loaded.state_dict().items() if k.startswith("language_head")},
                              strict=False)
        base_out = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["multimodal"]
        assert not torch.allclose(base_out, got)  # the adapters changed the output


def test_a_changed_base_encoder_is_refused(tmp_path):
    src = Path(resolve_encoder("all-MiniLM-L6-v2").path)
    local = tmp_path / "my-encoder"
    shutil.copytree(src, local)
    corpus = make_corpus(8, text_only=True)
    cfg = load_config("quick", ablation="language_only",
                      overrides={**TINY, "epochs": 1, "model.adapter": "lora", "model.encoder": str(local)})
    res = train(corpus, cfg, tmp_path / "run", progress=False)
    meta = json.loads((res.checkpoint / "senbert.json").read_text())
    assert meta["base_encoder"]["sha256"] == encoder_identity(str(local))["sha256"]
    Predictor.load(res.checkpoint)  # loads while the base is the same
    weights = local / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointMismatchError, match="SHA-256"):
        Predictor.load(res.checkpoint)


def test_packaged_base_is_named_and_its_hash_checked(tmp_path):
    cfg, model, tok = _lora_model()
    ident = encoder_identity("all-MiniLM-L6-v2")
    assert ident["packaged"] and ident["name"] == "all-MiniLM-L6-v2" and len(ident["sha256"]) == 64
    meta = CheckpointMeta(model=cfg.model.to_dict(), train=cfg.to_dict(), base_encoder=ident)
    save_checkpoint(tmp_path / "ck", model, meta, tok)
    update_meta(tmp_path / "ck", base_encoder={**ident, "sha256": "0" * 64})
    with pytest.raises(CheckpointMismatchError, match="all-MiniLM-L6-v2"):
        load_checkpoint(tmp_path / "ck")


def test_lora_on_the_full_senbert_trains_and_reloads(tmp_path):
    corpus = make_corpus(16)
    cfg = load_config("quick", overrides={**TINY, "epochs": 1, "model.adapter": "lora", "model.lora_r": 4})
    res = train(corpus, cfg, tmp_path / "run", progress=False)
    stored = load_file(str(res.checkpoint / "model.safetensors"))
    assert any(k.startswith("sense.") for k in stored) and any(k.startswith("multimodal.") for k in stored)
    assert Predictor.load(res.checkpoint).evaluate(corpus, "valid")["mae"] == pytest.approx(res.valid["mae"],
                                                                                             abs=1e-6)


def test_adapter_needs_a_fine_tunable_encoder():
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="adapter"):
        load_config("quick", overrides={"model.adapter": "lora", "model.encoder_mode": "frozen"})
    with pytest.raises(ConfigError, match="adapter"):
        load_config("quick", overrides={"model.adapter": "lora", "model.variant": "sense_only"})


def test_init_from_a_fully_fine_tuned_run_leaves_an_adapter_models_base_encoder_alone(tmp_path, caplog):
    """An adapter checkpoint stores only the adapters and names the packaged base: base weights
    taken from a fully fine-tuned run would be trained on but never saved, so they are not loaded."""
    from pipeline.training.trainer import init_weights

    full = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1, "precision": "fp32"})
    res = train(make_corpus(12, text_only=True), full, tmp_path / "full", progress=False)
    _, model, _ = _lora_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="pipeline.training.trainer"):
        init_weights(model, res.checkpoint)
    after = model.state_dict()
    base = [k for k in after if k.startswith("language.encoder.") and ".lora_" not in k]
    assert base and all(torch.equal(before[k], after[k]) for k in base)
    assert not torch.equal(before["language_head.1.weight"], after["language_head.1.weight"])  # the rest is loaded
    assert "not loaded: an adapter model" in caplog.text


def test_init_from_keeps_the_encoder_of_the_fixed_and_random_ablations(tmp_path, caplog):
    """Table II's Fixed keeps the pretrained encoder and Random a random one: a fine-tuned run's
    encoder loaded by init_from would make either another experiment. A run of the same mode
    (its --pretrain stage) passes its encoder on."""
    from pipeline.training.trainer import init_weights

    over = {**TINY, "epochs": 1, "precision": "fp32"}
    tuned = train(make_corpus(12, text_only=True), load_config("quick", "language_only", over), tmp_path / "ft",
                  progress=False)
    frozen_cfg = load_config("quick", "language_only", {**over, "model.encoder_mode": "frozen"})
    enc, _, hidden = load_encoder(frozen_cfg.model.encoder, "frozen")
    model = SenBERT(frozen_cfg.model, enc, hidden)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="pipeline.training.trainer"):
        init_weights(model, tuned.checkpoint)
    after = model.state_dict()
    encoder = [k for k in after if k.startswith("language.encoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert not torch.equal(before["language_head.1.weight"], after["language_head.1.weight"])
    assert "encoder weights in" in caplog.text and "encoder_mode frozen keeps its pretrained encoder" in caplog.text
    # a checkpoint of the same mode passes its encoder on
    frozen_run = train(make_corpus(12, text_only=True), frozen_cfg, tmp_path / "fr", progress=False)
    enc2, _, _ = load_encoder(frozen_cfg.model.encoder, "frozen")
    model2 = SenBERT(frozen_cfg.model, enc2, hidden)
    with torch.no_grad():
        next(p for n, p in model2.named_parameters() if n.startswith("language.encoder.")).add_(1.0)
    init_weights(model2, frozen_run.checkpoint)
    saved = load_file(str(frozen_run.checkpoint / "model.safetensors"))
    k = next(k for k in saved if k.startswith("language.encoder."))
    assert torch.equal(model2.state_dict()[k], saved[k])


def test_a_base_encoder_in_shards_is_hashed_shard_by_shard(tmp_path):
    """Sharded weights (an index and several files) are hashed too: before, only one weight file
    was, and an adapter checkpoint on a sharded encoder loaded onto any encoder of that name."""
    from safetensors.torch import save_file

    from pipeline.models.encoders import weights_digest

    d = tmp_path / "sharded"
    d.mkdir()
    save_file({"a": torch.ones(3)}, str(d / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(2)}, str(d / "model-00002-of-00002.safetensors"))
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": shards}))
    first = weights_digest(d)
    assert first and len(first) == 64
    save_file({"b": torch.ones(2)}, str(d / "model-00002-of-00002.safetensors"))  # one shard changed
    assert weights_digest(d) not in (None, first)
    (d / "model-00002-of-00002.safetensors").unlink()
    assert weights_digest(d) is None  # incomplete: not identified
    assert weights_digest(tmp_path) is None
