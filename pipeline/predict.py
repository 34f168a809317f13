"""Prediction and evaluation with a saved checkpoint.

>>> from pipeline.predict import Predictor
>>> p = Predictor.load("runs/demo/checkpoint")
>>> rows = p.predict_corpus(corpus)   # one dict per clip: score, language and sense scores
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import InputError
from model.senbert import SenBERT
from pipeline.checkpoint import WEIGHTS_FILE, CheckpointMeta, check_corpus, load_checkpoint, resolve_checkpoint_dir
from pipeline.data import Clip, Corpus
from pipeline.inference import make_dataset, metrics_of, predict_dataset
from pipeline.metrics import polarity, seven_class


@dataclass
class Predictor:
    model: SenBERT
    tokenizer: Any
    meta: CheckpointMeta
    path: Path
    device: str = "cpu"
    batch_size: int = 32

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "cpu") -> "Predictor":
        path = resolve_checkpoint_dir(checkpoint)
        model, tok, meta = load_checkpoint(path, device=device)
        return cls(model.to(device), tok, meta, path, device)

    @property
    def fingerprint(self) -> str:
        """A short hash of the weights and description: identifies 'the same checkpoint'."""
        h = hashlib.sha256()
        for name in (WEIGHTS_FILE, "senbert.json"):
            f = self.path / name
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def check(self, corpus: Corpus) -> None:
        check_corpus(self.meta, corpus, self.path)

    def predict_clips(self, clips: Sequence[Clip], progress: bool = False) -> dict[str, Any]:
        """Every head's predictions for ``clips``, in their order (batched by length)."""
        if not clips:
            return {"ids": [], "labels": [], "multimodal": []}
        cfg = self.meta.model_config
        ds = make_dataset(list(clips), self.tokenizer, cfg.uses_sense, self.meta)
        with torch.inference_mode():
            return predict_dataset(self.model, ds, self.batch_size, self.tokenizer, self.device, progress=progress)

    def predict_corpus(self, corpus: Corpus, split: str | None = None, progress: bool = False) -> list[dict[str, Any]]:
        """One row per clip: id, split, label, score in [-3, 3], polarity, 7-class label and the
        unimodal scores (``None`` where the checkpoint's variant has no such head)."""
        self.check(corpus)
        clips = corpus.split(split) if split else corpus.clips
        raw = self.predict_clips(clips, progress=progress)
        rows = []
        for i, c in enumerate(clips):
            score = float(np.clip(raw["multimodal"][i], -3.0, 3.0))
            cls, cls_name = seven_class(score)
            rows.append({
                "id": c.clip_id,
                "split": c.split,
                "label": c.label,
                "score": score,
                "polarity": polarity(score),
                "class7": cls,
                "class7_name": cls_name,
                "score_language": float(np.clip(raw["language"][i], -3, 3)) if "language" in raw else None,
                "score_sense": float(np.clip(raw["sense"][i], -3, 3)) if "sense" in raw else None,
                "text": c.text,
            })
        return rows

    def evaluate(self, corpus: Corpus, split: str = "test", progress: bool = False) -> dict[str, float]:
        """The field's metrics of the multimodal score on ``split`` (labelled clips only)."""
        self.check(corpus)
        clips = [c for c in corpus.split(split) if c.label is not None]
        if not clips:
            sizes = corpus.split_sizes()
            raise InputError(f"{corpus.source}: no labelled clips in split {split!r} (splits: {sizes})")
        m = metrics_of(self.predict_clips(clips, progress=progress))
        m["n"] = len(clips)
        return m
