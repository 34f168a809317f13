"""Inference helpers shared by training (valid-split evaluation) and prediction: datasets and
loaders for a checkpoint's settings, batched forward passes, and the metrics of a prediction.

Prediction batches clips of similar text length together (less padding, the same results) and
returns them in the order they were given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from model.senbert import SenBERT
from pipeline.corpora.clips import Clip, styled, with_context
from pipeline.models.checkpoint import CheckpointMeta
from pipeline.models.dataset import ClipDataset, LengthGroupedBatches, collate
from pipeline.models.metrics import regression_metrics

INPUT_KEYS = ("input_ids", "attention_mask", "audio", "audio_mask", "vision", "vision_mask")


def batch_to_inputs(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: batch[k].to(device) for k in INPUT_KEYS if k in batch}


def make_dataset(clips: list[Clip], tokenizer: Any, uses_sense: bool, meta: CheckpointMeta) -> ClipDataset:
    """The dataset of ``clips`` as ``meta`` (a checkpoint's) prepares them: normalisers, limits
    and, for a model that takes context, each clip's neighbours among ``clips``."""
    a_norm, v_norm = meta.normalizers()
    if meta.text_style != "as_given":  # before the context: the neighbours' transcripts are read in it too
        clips = [replace(c, text=styled(c.text, meta.text_style)) for c in clips]
    if meta.context > 0:
        clips = with_context(clips, meta.context)
    return ClipDataset(
        clips, tokenizer, max_text_len=meta.max_text_len, audio_norm=a_norm, vision_norm=v_norm,
        use_audio=uses_sense, use_vision=uses_sense, max_seq_len=meta.max_seq_len,
        max_context_len=meta.max_context_len if meta.context > 0 else 0,
    )


def _pad_id(tokenizer: Any) -> int:
    return getattr(tokenizer, "pad_token_id", None) or 0  # no tokenizer (sense only): 0


def make_loader(ds: ClipDataset, batch_size: int, tokenizer: Any, shuffle: bool = False,
                generator: torch.Generator | None = None, group_by_length: bool = False) -> DataLoader:
    pad_id = _pad_id(tokenizer)
    if group_by_length and shuffle:
        lengths = [len(it["input_ids"]) for it in ds.items]
        return DataLoader(ds, batch_sampler=LengthGroupedBatches(lengths, batch_size, generator or torch.Generator()),
                          collate_fn=lambda items: collate(items, pad_id))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=lambda items: collate(items, pad_id))


def length_order(ds: ClipDataset) -> list[int]:
    """Indices of ``ds`` from the longest clip to the shortest (text tokens, then audio and
    visual steps); stable, so equal lengths keep their input order."""
    def size(i: int) -> tuple[int, int]:
        it = ds.items[i]
        steps = max((len(it[k]) for k in ("audio", "vision") if it.get(k) is not None), default=0)
        return (-len(it["input_ids"]), -steps)

    return sorted(range(len(ds)), key=size)


def length_sorted_loader(ds: ClipDataset, batch_size: int, tokenizer: Any) -> tuple[DataLoader, list[int]]:
    """A loader whose batches hold clips of similar length, and the dataset order it follows."""
    order = length_order(ds)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pad_id = _pad_id(tokenizer)
    return DataLoader(ds, batch_sampler=batches, collate_fn=lambda items: collate(items, pad_id)), order


@torch.no_grad()
def run_inference(model: SenBERT, loader: DataLoader, device: torch.device | str = "cpu",
                  progress: bool = False, desc: str = "predict") -> dict[str, Any]:
    """Predictions of every head for every clip of ``loader`` (in the loader's order)."""
    model.eval()
    device = torch.device(device)
    out: dict[str, list] = {"ids": [], "labels": []}
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        preds = model(**batch_to_inputs(batch, device))
        out["ids"].extend(batch["ids"])
        out["labels"].extend(batch["labels"].tolist())
        for head, v in preds.items():
            out.setdefault(head, []).extend(v.float().cpu().tolist())
    return out


def predict_dataset(model: SenBERT, ds: ClipDataset, batch_size: int, tokenizer: Any,
                    device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:
    """:func:`run_inference` over ``ds`` in length-sorted batches, returned in ``ds``'s order."""
    if len(ds) == 0:
        return {"ids": [], "labels": [], "multimodal": []}
    loader, order = length_sorted_loader(ds, batch_size, tokenizer)
    raw = run_inference(model, loader, device, progress=progress)
    back = np.empty(len(order), dtype=np.int64)
    back[np.asarray(order)] = np.arange(len(order))
    return {k: [v[j] for j in back] for k, v in raw.items()}


def metrics_of(pred: dict[str, Any]) -> dict[str, float]:
    """The field's metrics of the final head, plus the MAE of every unimodal head present."""
    labels = np.asarray(pred["labels"], dtype=np.float64)
    ok = np.isfinite(labels)
    m = regression_metrics(np.asarray(pred["multimodal"])[ok], labels[ok])
    for head in ("language", "sense"):
        if head in pred:
            m[f"{head}_mae"] = float(np.mean(np.abs(np.asarray(pred[head])[ok] - labels[ok])))
    return m


def ensemble_mean(preds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The mean of several members' predictions of the same clips (same order)."""
    first = preds[0]
    out = {"ids": first["ids"], "labels": first["labels"]}
    for head in first:
        if head in ("ids", "labels"):
            continue
        if all(head in p for p in preds):
            out[head] = np.mean([p[head] for p in preds], axis=0).tolist()
    return out
