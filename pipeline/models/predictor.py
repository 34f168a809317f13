"""Prediction and evaluation with a saved checkpoint, a packed model, or the shipped default.

>>> from pipeline.models.predictor import Predictor
>>> p = Predictor.load("runs/demo/checkpoint")   # or Predictor.load("default"): the shipped model
>>> rows = p.predict_corpus(corpus)   # one dict per clip: score, language and sense scores
>>> rows = p.predict_utterances(utts, audio_names, vision_names)   # pieces of media files

:meth:`_Scoring.predict_utterances` reads :class:`UtteranceInput` (a piece of a file, its place
in the file, what of it the model may read): a model that reads context takes an utterance's
neighbours from the same file.

:meth:`Predictor.load` returns an :class:`Ensemble` for a packed model with several members
(:mod:`pipeline.models.packed`): the mean of their predictions, with the same interface.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import CheckpointMismatchError, InputError
from model.senbert import SenBERT
from pipeline.corpora.clips import Clip, Corpus
from pipeline.models.calibration import Calibration, calibrated
from pipeline.models.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    CheckpointMeta,
    check_corpus,
    check_extract_config,
    load_checkpoint,
    read_meta,
    resolve_checkpoint_dir,
    share_frozen_base,
)
from pipeline.models.inference import ensemble_mean, make_dataset, metrics_of, predict_dataset
from pipeline.models.metrics import polarity, seven_class
from pipeline.models.packed import (
    DEFAULT_NAMES,
    default_model_dir,
    is_packed,
    member_dirs,
    read_calibration,
    verify_packed,
)
from pipeline.models.precision import inference_autocast, resolve_precision


@dataclass(frozen=True)
class UtteranceInput:
    """One utterance of a media file, as the predictor reads it.

    ``file`` and ``index`` place it: a model that reads context takes its neighbours among the
    utterances of the same ``file``, in ``index`` order (their transcripts only). ``text`` is
    what the model reads of the transcript ("" when there is none, or the text is masked);
    ``audio`` ``(T_a, d_a)`` and ``vision`` ``(T_v, d_v)`` its sequences (None: none).
    """

    file: str
    index: int
    text: str = ""
    audio: np.ndarray | None = None
    vision: np.ndarray | None = None


def modalities_of(meta: CheckpointMeta) -> str:
    """The inputs a checkpoint reads: ``text``, ``audio+vision`` or ``text+audio+vision``."""
    cfg = meta.model_config
    return "+".join((["text"] if cfg.uses_language else []) + (["audio", "vision"] if cfg.uses_sense else []))


def resolve_model_path(checkpoint: str | os.PathLike[str] | None) -> Path:
    """The folder meant by a ``--checkpoint`` value: ``None`` or ``default`` is the shipped
    default model, a packed model's folder is itself, otherwise a checkpoint or run folder."""
    if checkpoint is None or str(checkpoint) in DEFAULT_NAMES:
        return default_model_dir(verify=False)
    if is_packed(checkpoint):
        return Path(checkpoint)
    return resolve_checkpoint_dir(checkpoint)


def model_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """The description of the model at ``path`` (:func:`resolve_model_path`'s folder) without
    loading its weights: a packed model's first member's (its members share one)."""
    if is_packed(path):
        dirs, _ = member_dirs(path, verify=False)
        return read_meta(dirs[0])
    return read_meta(Path(path))


class _Scoring:
    """What a predictor offers on top of ``predict_clips``: rows per clip and the field's metrics."""

    meta: CheckpointMeta
    path: Path
    name: str
    calibration: Calibration | None

    def check(self, corpus: Corpus) -> None:
        check_corpus(self.meta, corpus, self.path)

    def check_extract(self, config: Any) -> None:
        """Before extracting: refuse an extract config whose frame rates the model was not trained on."""
        from pipeline.features.cache import config_feature_info

        check_extract_config(self.meta, config_feature_info(config), self.path)

    def predict_clips(self, clips: Sequence[Clip], progress: bool = False, raw: bool = False) -> dict[str, Any]:
        """Every head's predictions for ``clips``, in their order; the final score (``multimodal``)
        calibrated when the model has a calibration (the raw one in ``multimodal_raw``), unless
        ``raw``."""
        raise NotImplementedError

    @property
    def modalities(self) -> str:
        return modalities_of(self.meta)

    @staticmethod
    def load(checkpoint: str | Path | None, device: str = "cpu", precision: str = "fp32") -> "Predictor | Ensemble":
        """A checkpoint folder, a run folder, a packed model (one member: a :class:`Predictor`;
        several: an :class:`Ensemble`) or ``None`` / ``"default"``: the shipped default model.
        ``precision`` (``fp32``, ``bf16`` or ``auto``:
        :func:`~pipeline.models.precision.resolve_precision`) is what its forward
        passes compute in; a model run in bf16 has a fingerprint of its own (its scores differ a
        little)."""
        path = resolve_model_path(checkpoint)
        precision = resolve_precision(precision, device)
        if is_packed(path):
            return Predictor._load_packed(path, device, precision)
        if is_packed(path.parent):  # one member of a packed model: its files are checked like the whole's
            verify_packed(path.parent)
        model, tok, meta = load_checkpoint(path, device=device)
        return Predictor(model.to(device), tok, meta, path, device, calibration=_own_calibration(meta, path),
                         precision=precision)

    @staticmethod
    def _load_packed(folder: Path, device: str, precision: str) -> "Predictor | Ensemble":
        members, manifest = member_dirs(folder)  # every file's SHA-256 checked first
        name, fingerprint = manifest.get("name", folder.name), _manifest_fingerprint(manifest)
        packed_cal = read_calibration(folder, manifest)  # the packed model's own (an ensemble's: of its mean)
        loaded: list[Predictor] = []
        for m in members:
            model, tok, meta = load_checkpoint(m, device=device)
            model = model.to(device)
            if loaded:  # the members' frozen base encoder is held once, not once per member
                share_frozen_base(model, loaded[0].model)
            loaded.append(Predictor(model, tok, meta, m, device, name=name, fingerprint_override=fingerprint,
                                    calibration=_own_calibration(meta, m), precision=precision))
        if len(loaded) == 1:
            loaded[0].path = folder
            if packed_cal is not None:
                loaded[0].calibration = packed_cal
            return loaded[0]
        return Ensemble(loaded, folder, name, fingerprint, calibration=packed_cal, precision=precision)

    def predict_utterances(self, utterances: Sequence[UtteranceInput], audio_names: Sequence[str] = (),
                           vision_names: Sequence[str] = (), feature_info: dict[str, Any] | None = None,
                           source: str = "utterances", progress: bool = False) -> list[dict[str, Any]]:
        """One row per utterance, in order (as :meth:`predict_corpus`'s, ``id`` its position).

        ``audio_names`` / ``vision_names`` name the sequences' columns (checked against the
        checkpoint's for a model with a sense block), ``feature_info`` how they were extracted
        (frame rates, checked likewise); ``source`` names the utterances in errors.
        """
        clips = [Clip(clip_id=str(n), text=u.text, audio=u.audio, vision=u.vision,
                      meta={"video_id": f"file:{u.file}", "clip": int(u.index)})  # context: the same file
                 for n, u in enumerate(utterances)]
        corpus = Corpus(clips, list(audio_names), list(vision_names), source=source, feature_info=feature_info or {})
        return self.predict_corpus(corpus, progress=progress)

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
                "score_raw": float(np.clip(raw.get("multimodal_raw", raw["multimodal"])[i], -3.0, 3.0)),
                "text": c.text,
                "model": self.name,
                "modalities": self.modalities,
                "calibration": self.calibration.describe() if self.calibration else "none",
            })
        return rows

    def evaluate(self, corpus: Corpus, split: str = "test", progress: bool = False) -> dict[str, float]:
        """The field's metrics of the multimodal score on ``split`` (labelled clips only); for a
        calibrated model also those before its calibration (``uncalibrated``)."""
        self.check(corpus)
        clips = corpus.split(split)
        n = sum(c.label is not None for c in clips)
        if not n:
            sizes = corpus.split_sizes()
            raise InputError(f"{corpus.source}: no labelled clips in split {split!r} (splits: {sizes})")
        # every clip of the split is read (an unlabelled one is a labelled one's neighbour, as in
        # `predict --split`); the metrics are of the labelled ones (metrics_of skips NaN labels)
        pred = self.predict_clips(clips, progress=progress)
        m = metrics_of(pred)
        m["n"] = n
        if "multimodal_raw" in pred:  # a calibrated model: the figures before its calibration too
            m["uncalibrated"] = metrics_of({**pred, "multimodal": pred["multimodal_raw"]})
        return m


def _with_precision(fingerprint: str, precision: str) -> str:
    """A fingerprint for scores computed in ``precision`` (fp32's is the checkpoint's own)."""
    return fingerprint if precision == "fp32" else f"{fingerprint}-{precision}"


def _own_calibration(meta: CheckpointMeta, path: Path) -> Calibration | None:
    return Calibration.from_dict(meta.calibration, str(path / META_FILE)) if meta.calibration else None


def _manifest_fingerprint(manifest: dict[str, Any]) -> str:
    """A packed model's fingerprint: the SHA-256 values of the files that make its scores (its
    card and other documents left out: a card that gains figures scores nothing differently)."""
    files = {k: v for k, v in manifest["files"].items() if not k.endswith(".md")}
    h = hashlib.sha256(json.dumps(files, sort_keys=True).encode())
    return h.hexdigest()[:16]


@dataclass
class Predictor(_Scoring):
    """One checkpoint, loaded: its model, tokenizer and description."""

    model: SenBERT
    tokenizer: Any
    meta: CheckpointMeta
    path: Path
    device: str = "cpu"
    batch_size: int = 32
    name: str = ""
    fingerprint_override: str = ""
    calibration: Calibration | None = None
    precision: str = "fp32"  # resolved: fp32 or bf16 (Predictor.load)

    def __post_init__(self) -> None:
        if not self.name:  # a run's name: the folder `senbert train --out` made
            self.name = self.path.parent.name if self.path.name == "checkpoint" else self.path.name

    @property
    def fingerprint(self) -> str:
        """A short hash of the size and modification time of the weights and description files:
        identifies 'the same checkpoint' cheaply (a copied checkpoint counts as another, and is
        scored again; a packed model's comes from its manifest's SHA-256 values)."""
        if self.fingerprint_override:
            return _with_precision(self.fingerprint_override, self.precision)
        h = hashlib.sha256()
        for name in (WEIGHTS_FILE, "senbert.json"):
            f = self.path / name
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return _with_precision(h.hexdigest()[:16], self.precision)

    def predict_clips(self, clips: Sequence[Clip], progress: bool = False, raw: bool = False) -> dict[str, Any]:
        """Every head's predictions for ``clips``, in their order (batched by length); see
        :meth:`_Scoring.predict_clips`."""
        if not clips:
            return {"ids": [], "labels": [], "multimodal": []}
        cfg = self.meta.model_config
        ds = make_dataset(list(clips), self.tokenizer, cfg.uses_sense, self.meta)
        with torch.inference_mode(), inference_autocast(self.precision, self.device):
            pred = predict_dataset(self.model, ds, self.batch_size, self.tokenizer, self.device, progress=progress)
        return pred if raw else calibrated(pred, self.calibration)


@dataclass
class Ensemble(_Scoring):
    """Several checkpoints of one recipe (seeds): every head is the mean of the members'."""

    members: list[Predictor]
    path: Path
    name: str
    fingerprint: str
    calibration: Calibration | None = None  # fitted on the members' mean (the members' own are not used)
    precision: str = "fp32"  # the members' (Predictor.load)

    def __post_init__(self) -> None:
        self.fingerprint = _with_precision(self.fingerprint, self.precision)
        first = self.members[0].meta
        for m in self.members[1:]:
            if modalities_of(m.meta) != modalities_of(first) or m.meta.audio_names != first.audio_names \
                    or m.meta.vision_names != first.vision_names:
                raise CheckpointMismatchError(f"{self.path}: its members read different inputs; an ensemble's "
                                              "members must share the variant and the feature columns")
        self.meta = first

    @property
    def device(self) -> str:
        return self.members[0].device

    def predict_clips(self, clips: Sequence[Clip], progress: bool = False, raw: bool = False) -> dict[str, Any]:
        mean = ensemble_mean([m.predict_clips(clips, progress=progress, raw=True) for m in self.members])
        return mean if raw else calibrated(mean, self.calibration)
