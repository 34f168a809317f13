"""Shared fixtures: tiny configs and corpora generated in the test (no ../shared data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pipeline.corpora.clips import Clip, Corpus

#: A small SenBERT for fast tests: real MiniLM encoder, narrow and shallow fusion layers.
TINY = {
    "model.d_model": 16, "model.num_heads": 2, "model.low_level_layers": 1, "model.self_attn_layers": 1,
    "model.high_level_layers": 1, "model.ffn_mult": 2, "max_text_len": 16, "batch_size": 8, "epochs": 2,
    "patience": 2,
}

#: The shipped sample corpus (360 template sentences, train / valid), a real label.csv.
SENTENCES = Path(__file__).resolve().parent.parent / "examples" / "sample_corpus" / "sentences.csv"

WORDS = ["good", "bad", "great", "awful", "fine", "terrible", "nice", "boring", "okay", "lovely"]


def make_corpus(n: int = 24, d_a: int = 5, d_v: int = 7, seed: int = 0, text_only: bool = False) -> Corpus:
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        label = float(np.round(rng.uniform(-3, 3), 1)) if i % 7 else 0.0
        text = " ".join(rng.choice(WORDS, int(rng.integers(2, 8))))
        split = ("train", "train", "valid", "test")[i % 4]
        audio = None if text_only else rng.normal(size=(int(rng.integers(3, 20)), d_a)).astype(np.float32)
        vision = None if text_only else rng.normal(size=(int(rng.integers(3, 20)), d_v)).astype(np.float32)
        clips.append(Clip(f"vid{i // 3}$_${i % 3}", text, label, split, audio, vision))
    if text_only:
        return Corpus(clips, source="synthetic-text")
    return Corpus(clips, [f"a{j}" for j in range(d_a)], [f"v{j}" for j in range(d_v)], "synthetic")


@pytest.fixture
def corpus() -> Corpus:
    return make_corpus()


def tiny_lora_runs(root: Path, corpus: Corpus, seeds=(1, 2), lora_r: int = 4) -> list[Path]:
    """One epoch of a tiny language-only LoRA model per seed on ``corpus``, each in
    ``root/seed_<s>``: the checkpoints (members for a packed model)."""
    from pipeline.training.config import load_config
    from pipeline.training.trainer import train

    over = {**TINY, "epochs": 1, "model.adapter": "lora", "model.lora_r": lora_r, "model.variant": "language_only"}
    return [train(corpus, load_config("quick", overrides={**over, "seed": s}), root / f"seed_{s}",
                  progress=False).checkpoint for s in seeds]


class TrainingCrash(Exception):
    """What :func:`train_until_killed` raises where the run dies."""


def train_until_killed(monkeypatch: pytest.MonkeyPatch, corpus: Corpus, cfg, run_dir, at_save: int = 2) -> None:
    """Train ``cfg`` into ``run_dir`` and kill it just after its ``at_save``-th resume-state write
    (the run dies in the epoch after that state, as a killed process would); ``torch.save`` is
    itself again afterwards."""
    import pipeline.training.trainer as tr

    real_save = tr.torch.save
    calls = {"n": 0}

    def save_then_crash(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        if isinstance(obj, dict) and "optimizer" in obj:
            calls["n"] += 1
            if calls["n"] == at_save:
                raise TrainingCrash

    monkeypatch.setattr(tr.torch, "save", save_then_crash)
    try:
        with pytest.raises(TrainingCrash):
            tr.train(corpus, cfg, run_dir, progress=False)
    finally:
        monkeypatch.setattr(tr.torch, "save", real_save)


@pytest.fixture(scope="session")
def minilm():
    """(encoder, tokenizer, hidden) of the packaged all-MiniLM-L6-v2 (loaded once)."""
    from pipeline.models.encoders import load_encoder

    return load_encoder("all-MiniLM-L6-v2")
