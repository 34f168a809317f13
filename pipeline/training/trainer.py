"""Training and evaluation of SenBERT on a :class:`~pipeline.corpora.clips.Corpus`.

``train(corpus, cfg, out_dir)`` runs the paper's setup: Adam with two learning rates (encoder
and the rest), linear warm-up then linear decay, batch 32, the multi-task loss of eq. (8),
early stopping on the valid split, and writes into ``out_dir``::

    config.yaml          the run's full configuration
    checkpoint/          the best epoch (see pipeline.models.checkpoint)
    state/last.pt        model, optimiser, scheduler and RNG state after the last epoch (resume;
                         an adapter model's frozen base encoder is not in it, as in its
                         checkpoint); removed when the run finishes unless ``keep_state: true``
    state/run.json       the configuration, training clips and valid clips the state belongs
                         to (with their feature sequences when the model reads them): a resume
                         with other settings (but epochs, patience, ...) or clips is refused
    metrics.jsonl        one JSON line per epoch: losses, valid metrics, sigmas, seconds
    plots/loss.png       loss curves;  plots/pred_vs_true.png  valid predictions vs labels
    result.json          final metrics of the chosen checkpoint on valid (and test when labelled);
                         with ``calibration``, also its valid metrics before calibration
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from common.errors import ConfigError, InputError
from common.io import atomic_open, atomic_write
from model.loss import UncertaintyWeightedLoss, tasks_for
from model.senbert import SenBERT
from pipeline.corpora.clips import Clip, Corpus, Normalizer, in_corpus
from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import Calibration, fit_on_train
from pipeline.models.checkpoint import (
    CheckpointMeta,
    read_meta,
    read_weights,
    resolve_checkpoint_dir,
    save_checkpoint,
    trained_state,
    trained_state_keys,
    update_meta,
    versions,
)
from pipeline.models.encoders import encoder_identity, is_adapter_weight, load_encoder, lora_settings
from pipeline.models.inference import batch_to_inputs, make_dataset, make_loader, metrics_of, run_inference
from pipeline.models.metrics import HIGHER_IS_BETTER, format_table, summarize_seeds
from pipeline.models.precision import resolve_precision
from pipeline.models.predictor import Predictor
from pipeline.training.config import TrainConfig

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA's generators as well


def check_corpus_for_config(corpus: Corpus, cfg: TrainConfig) -> None:
    m = cfg.model
    if m.uses_sense and not (corpus.has_audio and corpus.has_vision):
        raise ConfigError(
            f"{corpus.source} has no acoustic/visual features (a text-only corpus such as a label.csv); "
            f"the {m.variant!r} model needs them. Use --ablation language_only, or extract features first "
            "(`senbert extract`)."
        )
    sizes = corpus.split_sizes()
    if sizes["train"] == 0:
        raise InputError(f"{corpus.source}: no clips in the 'train' split")
    unlabeled = [c.clip_id for c in corpus.clips if c.split in ("train", "valid") and c.label is None]
    if unlabeled:
        raise InputError(f"{corpus.source}: {len(unlabeled)} train/valid clip(s) have no label, e.g. {unlabeled[:3]}")


@dataclass(frozen=True)
class Schedule:
    """The learning-rate factor per optimiser step: linear warm-up over ``warmup`` steps, then
    linear decay to 0 at step ``total``.

    A run resumed with more epochs than it was started with does not restart the schedule: from
    the step it resumes at (``knot``) the rate decays linearly from the factor it had there
    (``knot_factor``) to 0 at the new total, so the rate never jumps (see :meth:`extended`).
    """

    warmup: int
    total: int
    knot: int = -1
    knot_factor: float = 1.0

    @classmethod
    def for_steps(cls, total_steps: int, warmup_ratio: float) -> "Schedule":
        return cls(int(warmup_ratio * total_steps), total_steps)

    def factor(self, step: int) -> float:
        if self.knot >= 0 and step >= self.knot:
            return max(0.0, self.knot_factor * (self.total - step) / max(1, self.total - self.knot))
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))

    def extended(self, step: int, total: int) -> "Schedule":
        """The same schedule up to ``step``, then a linear decay to 0 at ``total``."""
        return Schedule(self.warmup, total, step, self.factor(step))


def build_optimizer(model: SenBERT, loss_fn: UncertaintyWeightedLoss, cfg: TrainConfig, total_steps: int,
                    schedule: Schedule | None = None
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam with the encoder (or its adapters) at ``lr_encoder`` (optionally decayed per layer) and
    the rest at ``lr_other``; the rate follows ``schedule`` (default: linear warm-up over
    ``warmup_ratio`` of ``total_steps``, then linear decay to 0)."""
    groups: list[dict[str, Any]] = []
    enc_params = model.encoder_parameters()
    if enc_params:
        if cfg.layer_decay < 1.0:
            groups.extend(_layerwise_groups(model, cfg))
        else:
            groups.append({"params": enc_params, "lr": cfg.lr_encoder, "name": "encoder"})
    other = model.other_parameters() + list(loss_fn.parameters())
    groups.append({"params": other, "lr": cfg.lr_other, "name": "other"})
    opt = _adam(groups, cfg.weight_decay, next(model.parameters()).device)
    schedule = schedule or Schedule.for_steps(total_steps, cfg.warmup_ratio)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule.factor)


def train_step(model: SenBERT, loss_fn: UncertaintyWeightedLoss, opt: torch.optim.Optimizer,
               batch: dict[str, Any], device: torch.device, cfg: TrainConfig
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on ``batch`` (autocast per ``cfg.precision``, gradient clipping per
    ``cfg.grad_clip``); the scheduler is the caller's. Returns (fp32 outputs, labels, loss, per-task L1).

    A step whose loss or gradient norm is not finite changes nothing (one NaN gradient would make
    every weight and Adam moment NaN, and the saved state with them) and raises
    :class:`NonFiniteStep`."""
    labels = batch["labels"].to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        outputs = model(**batch_to_inputs(batch, device))
    outputs = {k: v.float() for k, v in outputs.items()}
    loss, parts = loss_fn(outputs, labels)
    opt.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        raise NonFiniteStep(f"loss {loss.item()}")
    loss.backward()
    params = [p for p in list(model.parameters()) + list(loss_fn.parameters()) if p.grad is not None]
    # the norm is checked with clipping off too (grad_clip: 0 clips at infinity, i.e. not at all)
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
    if not torch.isfinite(norm):
        opt.zero_grad(set_to_none=True)
        raise NonFiniteStep(f"gradient norm {norm.item()}")
    opt.step()
    return outputs, labels, loss, parts


class NonFiniteStep(ArithmeticError):
    """A training step skipped: its loss or gradient norm was not finite."""


def drop_modalities(batch: dict[str, Any], probs: dict[str, float], generator: torch.Generator,
                    empty_ids: list[int] | tuple[int, ...] = (), pad_id: int = 0) -> dict[str, Any]:
    """Modality dropout (``modality_dropout``, training batches only): a copy of ``batch`` in which
    each clip loses each modality with its probability in ``probs``.

    A dropped audio or vision sequence gets its mask all False and its values 0 (length 0: the
    model's path for an empty sequence); a dropped text becomes ``empty_ids``, the tokenizer's
    encoding of the empty string ([CLS] [SEP]). The draws come from ``generator`` (the training
    generator, saved with the resume state), one per clip for each modality whose probability
    is above 0, in the order audio, vision, text: with every probability 0 nothing is drawn and
    the batch is returned as it is.
    """
    out = dict(batch)
    n = int(batch["labels"].shape[0])
    for kind in ("audio", "vision", "text"):
        p = probs.get(kind, 0.0)
        key = "input_ids" if kind == "text" else f"{kind}_mask"
        if p <= 0.0 or key not in batch:
            continue
        drop = torch.rand(n, generator=generator) < p
        if not drop.any():
            continue
        if kind == "text":
            ids, am = out["input_ids"].clone(), out["attention_mask"].clone()
            need = len(empty_ids)
            if need > ids.shape[1]:  # never with [CLS] [SEP] (every text has them), but stay safe
                extra = need - ids.shape[1]
                ids = torch.cat([ids, torch.full((n, extra), pad_id, dtype=ids.dtype)], 1)
                am = torch.cat([am, torch.zeros(n, extra, dtype=am.dtype)], 1)
            ids[drop], am[drop] = pad_id, 0
            if need:
                ids[drop, :need] = torch.tensor(list(empty_ids), dtype=ids.dtype)
                am[drop, :need] = 1
            out["input_ids"], out["attention_mask"] = ids, am
        else:
            mask, x = out[key].clone(), out[kind].clone()
            mask[drop], x[drop] = False, 0.0
            out[key], out[kind] = mask, x
    return out


def _dropout_probs(cfg: TrainConfig) -> dict[str, float]:
    """``cfg.modality_dropout`` for the modalities the model reads (the others are ignored, with a note)."""
    m = cfg.model
    probs = cfg.modality_dropout_probs()
    reads = {"audio": m.uses_sense, "vision": m.uses_sense, "text": m.uses_language}
    ignored = [k for k, p in probs.items() if p > 0 and not reads[k]]
    if ignored:
        log.warning("modality_dropout for %s ignored: the %s model does not read it", "/".join(ignored), m.variant)
    return {k: p for k, p in probs.items() if p > 0 and reads[k]}


def _adam(groups: list[dict[str, Any]], weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam, fused into one kernel where this torch supports it for ``device`` (same maths, same
    state; on 2 CPU cores the fused step over all-mpnet-base-v2 takes 0.19 s instead of 0.77 s)."""
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.Adam(groups, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError) as exc:  # an older torch or an unsupported device
            log.debug("fused Adam unavailable (%s); using the default implementation", exc)
    return torch.optim.Adam(groups, weight_decay=weight_decay)


def _layerwise_groups(model: SenBERT, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Encoder layer ``i`` of ``n`` gets ``lr_encoder * layer_decay ** (n - i)``; embeddings the lowest."""
    enc = model.language.encoder
    n_layers = int(getattr(enc.config, "num_hidden_layers", 0))
    by_depth: dict[int, list[torch.nn.Parameter]] = {}
    for name, p in enc.named_parameters():
        if not p.requires_grad:
            continue
        depth = n_layers  # pooler and anything above the layers
        if "embeddings" in name:
            depth = 0
        else:
            parts = name.split(".")
            for i, part in enumerate(parts[:-1]):
                if part == "layer" and parts[i + 1].isdigit():
                    depth = int(parts[i + 1]) + 1
                    break
        by_depth.setdefault(depth, []).append(p)
    return [{"params": ps, "lr": cfg.lr_encoder * cfg.layer_decay ** (n_layers - d), "name": f"encoder_{d}"}
            for d, ps in sorted(by_depth.items())]


def init_weights(model: SenBERT, checkpoint: str | os.PathLike[str]) -> None:
    """Initialise ``model`` with the weights of ``checkpoint`` whose names and shapes match
    (e.g. the encoder and language head of a language-only model trained on another corpus)."""
    try:
        path = resolve_checkpoint_dir(checkpoint)
    except InputError as exc:
        raise InputError(f"init_from: {exc}") from None
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise InputError(f"init_from: {path} is not a SenBERT checkpoint (no model.safetensors)")
    src = read_weights(weights)
    own = model.state_dict()
    usable = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    if model.cfg.adapter != "none":
        # the frozen base encoder is the packaged one: its checkpoint stores only the adapters, so
        # base weights taken from a fully fine-tuned run would be trained on but never saved
        base = [k for k in usable if k.startswith("language.encoder.") and not is_adapter_weight(k)]
        if base:
            log.warning("init_from: %d weights of the pretrained encoder in %s not loaded: an adapter model "
                        "(adapter: %s) trains on the packaged base encoder, which its checkpoint names",
                        len(base), weights, model.cfg.adapter)
            usable = {k: v for k, v in usable.items() if k not in base}
    mode = model.cfg.encoder_mode
    if mode != "finetune" and read_meta(path).model_config.encoder_mode != mode:
        # Table II's "Fixed" keeps the pretrained encoder and "Random" a randomly initialised one:
        # the encoder of a run of another mode would make either a different experiment (a stage
        # of the same ablation, such as its --pretrain stage, passes its encoder on)
        enc = [k for k in usable if k.startswith("language.encoder.")]
        if enc:
            log.warning("init_from: %d encoder weights in %s not loaded: encoder_mode %s keeps its %s encoder "
                        "(the other weights are loaded)", len(enc), weights, mode,
                        "pretrained" if mode == "frozen" else "randomly initialised")
            usable = {k: v for k, v in usable.items() if k not in enc}
    if not usable:
        raise ConfigError(f"init_from: no weight of {weights} fits this model (another encoder?)")
    model.load_state_dict(usable, strict=False)
    log.info("initialised %d of %d tensors from %s", len(usable), len(own), weights)


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float] | None
    seconds_per_epoch: float


def _better(a: float, b: float | None, metric: str) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return not math.isnan(a)
    return a > b if HIGHER_IS_BETTER.get(metric, False) else a < b


def _plots(out_dir: Path, history: list[dict[str, Any]], valid_pred: dict[str, Any] | None) -> None:
    import matplotlib  # only for the plots at the end of a run (its import takes about a second)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pdir = out_dir / "plots"
    pdir.mkdir(exist_ok=True)
    if history:
        ep = [h["epoch"] for h in history]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(ep, [h["train_loss"] for h in history], label="train objective (eq. 8; L1 with one task)")
        ax.plot(ep, [h["train_l1_multimodal"] for h in history], label="train L1 (final head)")
        ax.plot(ep, [h["valid"]["mae"] for h in history], label="valid MAE")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(pdir / "loss.png", dpi=100)
        plt.close(fig)
    if valid_pred:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(valid_pred["labels"], valid_pred["multimodal"], s=8, alpha=0.6)
        ax.plot([-3, 3], [-3, 3], "k--", lw=1)
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_xlabel("true sentiment")
        ax.set_ylabel("predicted sentiment")
        ax.set_title("valid split, chosen checkpoint")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(pdir / "pred_vs_true.png", dpi=100)
        plt.close(fig)


def state_path(run_dir: str | os.PathLike[str]) -> Path:
    """Where a run keeps its resume state; it exists only while the run is unfinished (or
    ``keep_state: true``), so ``state_path(d).exists()`` says whether ``train`` can resume ``d``."""
    return Path(run_dir) / "state" / "last.pt"


def check_run(cfg: TrainConfig, out: Path, resume: bool) -> None:
    """What can be checked before any corpus is read or any feature extracted: the preliminary
    and extra corpora exist, and the run folder fits ``resume``."""
    for kind, paths in (("pretrain", cfg.pretrain), ("extra_train", cfg.extra_train)):
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise InputError(f"{kind} corpus {missing[0]}: no such file or folder")
    _check_run_dir(Path(out), resume)


def _check_run_dir(out: Path, resume: bool) -> None:
    state_file = state_path(out)
    if out.exists() and (out / "result.json").exists() and not resume:
        raise ConfigError(f"{out} already holds a finished run; choose another --out or pass --resume")
    if state_file.exists() and not resume:
        raise ConfigError(f"{out} holds an unfinished run; pass --resume to continue it or choose another --out")
    if resume and (out / "result.json").exists() and not state_file.exists():
        raise ConfigError(f"{out} holds a finished run whose resume state was removed when it finished "
                          "(keep_state: false); train longer in a new --out, or set keep_state: true "
                          "to keep runs extendable")


def resolve_run_config(cfg: TrainConfig, corpus: Corpus, device: str = "cpu") -> TrainConfig:
    """A copy of ``cfg`` with what the run decides filled in: the feature widths of ``corpus``
    and the precision for ``device`` (``auto`` resolved). ``cfg`` itself is not changed."""
    m = cfg.model
    model = replace(m, audio_dim=len(corpus.audio_names) if m.uses_sense else 0,
                    vision_dim=len(corpus.vision_names) if m.uses_sense else 0,
                    lora_targets=list(m.lora_targets))
    return replace(cfg, model=model, precision=resolve_precision(cfg.precision, device))


def _training_clips(corpus: Corpus, cfg: TrainConfig) -> list[Clip]:
    """The train split plus the train splits of ``cfg.extra_train``."""
    clips = corpus.split("train")
    m = cfg.model
    for extra in cfg.extra_train:
        more = load_corpus(extra)
        if m.uses_sense and (more.audio_names != corpus.audio_names or more.vision_names != corpus.vision_names):
            raise ConfigError(f"extra corpus {extra} has other feature columns than {corpus.source}")
        # a video id of its own per corpus: a clip's neighbours (context) come from its corpus only
        added = in_corpus([c for c in more.split("train") if c.label is not None], f"{extra}#")
        log.info("adding %d training clips from %s", len(added), extra)
        clips = clips + added
    return clips


#: Settings a resume may change: how long and how patiently it trains, what it keeps, how it
#: computes (threads, precision, evaluation batches). Any other change would continue a run with
#: a state that another configuration made.
RESUME_MAY_CHANGE = ("epochs", "patience", "keep_state", "num_threads", "precision", "eval_batch_size", "name")
RUN_FILE = "run.json"  # next to the resume state: what the run trains, for a resume to compare


def _clips_sha256(clips: list[Clip], features: bool) -> str:
    """A digest of what training reads of ``clips``: ids, labels, transcripts and, for a model
    that reads them (``features``), the acoustic and visual sequences."""
    h = hashlib.sha256()
    for c in clips:
        h.update(f"{c.clip_id}\t{c.label!r}\t{c.text}\n".encode())
        if features:
            for seq in (c.audio, c.vision):
                arr = np.ascontiguousarray(seq if seq is not None else np.zeros((0, 0), np.float32))
                h.update(f"{arr.dtype.str}{arr.shape}".encode())
                h.update(arr.tobytes())
    return h.hexdigest()


def _run_identity(cfg: TrainConfig, train_clips: list[Clip], valid_clips: list[Clip]) -> dict[str, Any]:
    """What a resumed run must share with the run it continues: its configuration (less
    :data:`RESUME_MAY_CHANGE`), its training clips and the clips it selects epochs on (ids,
    labels, transcripts, and the feature sequences when the model reads them)."""
    conf = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_MAY_CHANGE}
    features = cfg.model.uses_sense
    return json.loads(json.dumps({
        "config": conf, "train_clips": len(train_clips), "train_sha256": _clips_sha256(train_clips, features),
        "valid_clips": len(valid_clips), "valid_sha256": _clips_sha256(valid_clips, features),
    }))


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]} {old!r} -> {new!r}"]


#: Settings in which a finished run may differ from the config that would reuse it (how it computed).
REUSE_MAY_DIFFER = ("keep_state", "num_threads", "precision", "eval_batch_size", "name")


def _recipe(d: dict[str, Any]) -> dict[str, Any]:
    """A run config's mapping as a finished run is compared on: without :data:`REUSE_MAY_DIFFER`,
    the feature widths the corpus fills in and the preliminary stage's settings when there is
    none; corpus paths by their last two parts (a corpus may be reached by another path),
    ``init_from`` by whether there is one."""
    out = {k: v for k, v in d.items() if k not in REUSE_MAY_DIFFER}
    out["model"] = {k: v for k, v in (d.get("model") or {}).items() if k not in ("audio_dim", "vision_dim")}
    for key in ("extra_train", "pretrain"):
        out[key] = ["/".join(Path(str(x)).parts[-2:]) for x in d.get(key) or []]
    out["init_from"] = bool(d.get("init_from"))
    if not out["pretrain"]:  # the preliminary stage's own settings have no effect without one
        out.pop("pretrain_epochs", None)
        out.pop("pretrain_context", None)
    return json.loads(json.dumps(out))


def check_finished_run(run_dir: Path, cfg: TrainConfig) -> None:
    """ConfigError when the finished run in ``run_dir`` (reused instead of trained again) was
    trained with other settings than ``cfg``: reusing it would mix recipes without a word."""
    f = run_dir / "config.yaml"
    try:
        saved = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{f}: unreadable ({e}); the finished run cannot be checked before it is reused") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{f}: not a run configuration; the finished run cannot be checked before it is reused")
    diffs = _differences(_recipe(saved), _recipe(cfg.to_dict()))
    if diffs:
        raise ConfigError(f"{run_dir} is a finished run with other settings than this one: {'; '.join(diffs[:6])}"
                          f"{' ...' if len(diffs) > 6 else ''}. It would be reused as it is: use another output "
                          "folder, or remove that run to train it again")


def _check_resume_identity(out: Path, ident: dict[str, Any], train_clips: list[Clip]) -> None:
    """ConfigError when ``out``'s unfinished run was started with another configuration, other
    training clips or other valid clips than the resume would continue it with."""
    f = state_path(out).parent / RUN_FILE
    if not f.is_file():  # a state saved before runs recorded this
        return
    try:
        old = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{f}: unreadable ({e}); the run's state cannot be checked against this resume") from None
    diffs = _differences(old.get("config"), ident["config"])
    if diffs:
        raise ConfigError(f"{out}: the unfinished run was started with other settings than this resume: "
                          f"{'; '.join(diffs[:6])}{' ...' if len(diffs) > 6 else ''}. Resume it with the settings "
                          f"of its config.yaml (only {', '.join(RESUME_MAY_CHANGE[:-1])} may change), or start "
                          "a new --out")
    what = "ids, labels, transcripts or feature sequences"
    if "valid_sha256" not in old:  # saved before runs recorded the valid split and the features
        what = "ids, labels or transcripts"
        ident = {**ident, "train_sha256": _clips_sha256(train_clips, features=False)}
    for part, role in (("train", "training clips"), ("valid", "valid clips (which choose its best epoch)")):
        if f"{part}_sha256" not in old:
            continue
        if (old.get(f"{part}_clips"), old[f"{part}_sha256"]) != (ident[f"{part}_clips"], ident[f"{part}_sha256"]):
            raise ConfigError(f"{out}: the unfinished run was started on other {role} ({old.get(f'{part}_clips')} "
                              f"then, {ident[f'{part}_clips']} now, or other {what}); resume it on the same "
                              "corpus and features, or start a new --out")


def _checkpoint_meta(corpus: Corpus, cfg: TrainConfig, train_clips: list[Clip]) -> CheckpointMeta:
    m = cfg.model
    a_norm = v_norm = None
    if m.uses_sense:
        a_norm = Normalizer.fit((c.audio for c in train_clips), m.audio_dim)
        v_norm = Normalizer.fit((c.vision for c in train_clips), m.vision_dim)
    base = encoder_identity(m.encoder) if m.adapter != "none" else None
    if base is not None and not base["sha256"]:
        log.warning("the weights of the base encoder %r cannot be read to hash them: the adapter checkpoint "
                    "will not be able to check that it is loaded onto the same encoder", m.encoder)
    return CheckpointMeta(
        model=m.to_dict(), train=cfg.to_dict(),
        audio_names=list(corpus.audio_names) if m.uses_sense else [],
        vision_names=list(corpus.vision_names) if m.uses_sense else [],
        audio_norm=a_norm.to_dict() if a_norm else None, vision_norm=v_norm.to_dict() if v_norm else None,
        max_text_len=cfg.max_text_len, max_seq_len=cfg.max_seq_len, data_source=corpus.source, versions=versions(),
        context=cfg.context, max_context_len=cfg.max_context_len if cfg.context > 0 else 0,
        text_style=cfg.text_style, feature_info=dict(corpus.feature_info) if m.uses_sense else {},
        base_encoder=base,
    )


@dataclass
class _Progress:
    """What the epoch loop carries from epoch to epoch (and what a resume restores)."""

    history: list[dict[str, Any]]
    best: float | None = None
    best_epoch: int = 0
    epoch: int = 0  # the last finished epoch


def _save_state(path: Path, model: SenBERT, loss_fn: UncertaintyWeightedLoss, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LambdaLR, schedule: Schedule, gen: torch.Generator,
                prog: _Progress) -> None:
    # an adapter model's frozen base encoder is the packaged one (named in state/run.json): not
    # stored, so its state is a few MB, not the whole encoder
    weights = trained_state(model) if model.cfg.adapter != "none" else model.state_dict()
    state = {
        "model": weights, "loss": loss_fn.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "schedule": schedule.__dict__, "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "history": prog.history, "best": prog.best, "best_epoch": prog.best_epoch, "epoch": prog.epoch,
    }
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def _load_state(path: Path, dev: torch.device, model: SenBERT, loss_fn: UncertaintyWeightedLoss,
                opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[dict[str, Any], _Progress]:
    # on the CPU: the RNG states must stay CPU byte tensors; load_state_dict moves the rest to dev
    st = torch.load(path, map_location="cpu", weights_only=False)
    missing, unexpected = model.load_state_dict(st["model"], strict=False)
    frozen_base = set(model.state_dict()) - set(trained_state_keys(model))
    if unexpected or set(missing) - frozen_base:
        raise ConfigError(f"{path}: this resume state does not fit the model (missing "
                          f"{sorted(set(missing) - frozen_base)[:3]}, unexpected {sorted(unexpected)[:3]}); "
                          "start the run afresh without --resume")
    loss_fn.load_state_dict(st["loss"])
    opt.load_state_dict(st["optimizer"])
    gen.set_state(st["generator"])
    torch.set_rng_state(st["torch_rng"])
    np.random.set_state(st["numpy_rng"])
    random.setstate(st["python_rng"])
    if st.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda_rng"])
    return st, _Progress(st["history"], st["best"], st["best_epoch"], st["epoch"])


def _resumed_schedule(st: dict[str, Any], planned: Schedule, out: Path) -> Schedule:
    """The schedule a resumed run continues with: the saved one; if the run now has another
    number of steps (``--epochs`` changed), the saved one up to now, then a linear decay to 0
    at the new total from the rate it had. A finished run extended (``keep_state``) had decayed
    to 0, where continuing would train nothing: it restarts at the rate a run planned for the
    new total has at that step, and says so."""
    saved = Schedule(**st["schedule"]) if st.get("schedule") else planned  # states before the key: planned
    if saved.total == planned.total:
        return saved
    step = int(st["scheduler"]["last_epoch"])
    if saved.factor(step) <= 0.0 < planned.factor(step):
        restart = Schedule(planned.warmup, planned.total, step, planned.factor(step))
        log.warning("%s: the run had finished its schedule (learning rate 0 at step %d); extended to %d steps, "
                    "it restarts at %.3g of the peak rate, where a run planned for %d steps would be, and decays "
                    "linearly to 0", out, step, planned.total, restart.knot_factor, planned.total)
        return restart
    ext = saved.extended(step, planned.total)
    log.info("%s: resumed with %d steps in all instead of %d: from step %d the learning rate decays linearly "
             "from %.3g of its peak to 0 (no warm restart)", out, planned.total, saved.total, step, ext.knot_factor)
    return ext


def _train_epoch(model: SenBERT, loss_fn: UncertaintyWeightedLoss, opt: torch.optim.Optimizer,
                 sched: torch.optim.lr_scheduler.LambdaLR, loader: Any, dev: torch.device, cfg: TrainConfig,
                 desc: str, progress: bool, dropout: Any = None) -> tuple[dict[str, float], int, float]:
    """One pass over ``loader``: the sample-weighted mean of each loss, samples seen, seconds.

    ``dropout``, when given, maps each batch to its copy with modalities dropped (see
    :func:`drop_modalities`)."""
    model.train()
    t0 = time.perf_counter()
    sums: dict[str, float] = {}
    n_seen = skipped = 0
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for step, batch in enumerate(bar, 1):
        if dropout is not None:
            batch = dropout(batch)
        try:
            outputs, labels, loss, parts = train_step(model, loss_fn, opt, batch, dev, cfg)
        except NonFiniteStep as e:
            skipped += 1
            log.warning("%s: step %d skipped, not finite (%s)", desc, step, e)
            continue
        sched.step()
        bs = labels.shape[0]
        n_seen += bs
        sums["loss"] = sums.get("loss", 0.0) + loss.item() * bs
        l1_final = float(torch.nn.functional.l1_loss(outputs["multimodal"].detach(), labels))
        sums["l1_multimodal"] = sums.get("l1_multimodal", 0.0) + l1_final * bs
        for t, v in parts.items():
            key = "bce_ordinal" if t == "ordinal" else f"l1_{t}"
            sums[key] = sums.get(key, 0.0) + float(v) * bs
        bar.set_postfix(loss=f"{sums['loss'] / n_seen:.3f}")
    if not n_seen:
        raise ConfigError(f"{desc}: every step had a non-finite loss or gradient ({skipped} skipped): the "
                            "training diverged or the data hold NaN or infinite values; lower the learning "
                            "rates (lr_encoder, lr_other) or check the corpus")
    means = {k: v / n_seen for k, v in sums.items()}
    if skipped:  # recorded in metrics.jsonl as train_skipped_steps
        means["skipped_steps"] = skipped
    return means, n_seen, time.perf_counter() - t0


def train(corpus: Corpus, cfg: TrainConfig, out_dir: str | os.PathLike[str], resume: bool = False,
          progress: bool = True, device: str = "cpu") -> TrainResult:
    """Train on ``corpus``'s train split, select on valid, save the best checkpoint."""
    out = Path(out_dir)
    check_corpus_for_config(corpus, cfg)
    check_run(cfg, out, resume)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = torch.device(device)
    state_file = state_path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.pretrain and not cfg.init_from:
        cfg = replace(cfg, init_from=str(run_pretrain(cfg, out / "pretrain", progress=progress, device=device)))
    # Seeded after any preliminary stage (which trains in this process): a run that reuses a
    # finished stage, train_seeds and a single --pretrain run draw the same stream for a seed.
    set_seed(cfg.seed)
    cfg = resolve_run_config(cfg, corpus, device)
    train_clips = _training_clips(corpus, cfg)
    valid_clips = corpus.split("valid") or train_clips
    ident = _run_identity(cfg, train_clips, valid_clips)
    if resume and state_file.exists():  # before config.yaml is written over
        _check_resume_identity(out, ident, train_clips)
    atomic_write(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    m = cfg.model
    encoder = tok = None
    hidden = 0
    if m.uses_language:
        encoder, tok, hidden = load_encoder(m.encoder, m.encoder_mode, lora_settings(m))
    model = SenBERT(m, encoder, hidden).to(dev)
    loss_fn = UncertaintyWeightedLoss(tasks_for(m), m.ordinal_weight).to(dev)
    if cfg.init_from:
        init_weights(model, cfg.init_from)

    meta = _checkpoint_meta(corpus, cfg, train_clips)
    train_ds = make_dataset(train_clips, tok, m.uses_sense, meta)
    if not corpus.split("valid"):
        log.warning("%s has no valid split: early stopping uses the train split", corpus.source)
    valid_ds = make_dataset(valid_clips, tok, m.uses_sense, meta)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = make_loader(train_ds, cfg.batch_size, tok, shuffle=True, generator=gen,
                               group_by_length=cfg.group_by_length)
    valid_loader = make_loader(valid_ds, cfg.eval_batch_size, tok)
    if cfg.context_dropout > 0:
        if meta.context > 0:  # drawn from the training generator: reproducible, and resumed with it
            train_ds.set_context_dropout(cfg.context_dropout, gen)
        else:
            log.warning("context_dropout %.2f ignored: this run reads no context (context: 0)", cfg.context_dropout)
    probs = _dropout_probs(cfg)
    dropout = None
    if probs:  # drawn from the training generator: reproducible, and resumed with it
        empty_ids = list(tok("")["input_ids"]) if tok is not None and "text" in probs else []
        pad_id = getattr(tok, "pad_token_id", None) or 0  # as the loader pads
        dropout = functools.partial(drop_modalities, probs=probs, generator=gen, empty_ids=empty_ids, pad_id=pad_id)
    schedule = Schedule.for_steps(max(1, len(train_loader) * cfg.epochs), cfg.warmup_ratio)
    opt, sched = build_optimizer(model, loss_fn, cfg, schedule.total, schedule)

    prog = _Progress(history=[])
    if resume and state_file.exists():
        st, prog = _load_state(state_file, dev, model, loss_fn, opt, gen)
        schedule = _resumed_schedule(st, schedule, out)
        sched.lr_lambdas = [schedule.factor for _ in opt.param_groups]
        sched.load_state_dict({**st["scheduler"], "lr_lambdas": [None] * len(opt.param_groups)})
        for group, base_lr in zip(opt.param_groups, sched.base_lrs):  # the rate of the next step
            group["lr"] = base_lr * schedule.factor(sched.last_epoch)
        log.info("resuming %s at epoch %d", out, prog.epoch + 1)
    # The log holds exactly the epochs of the state it continues: after a crash between the two
    # writes it may hold one more, and a run started afresh (no state saved yet) holds none.
    if (out / "metrics.jsonl").exists() or prog.history:
        atomic_write(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in prog.history))

    metric = cfg.select_metric
    metrics_log = out / "metrics.jsonl"
    # as the loop below decides after an epoch (a run with no best epoch yet counts from 0), so a
    # resume with a lower patience stops where a run started with it would have stopped
    stopped = prog.epoch >= cfg.epochs or (prog.epoch > 0 and prog.epoch - prog.best_epoch >= cfg.patience)
    for epoch in range(prog.epoch + 1, cfg.epochs + 1):
        if stopped:
            break
        means, n_seen, train_seconds = _train_epoch(model, loss_fn, opt, sched, train_loader, dev, cfg,
                                                    f"epoch {epoch}/{cfg.epochs}", progress, dropout)
        valid_pred = run_inference(model, valid_loader, dev)
        vm = metrics_of(valid_pred)
        rec = {
            "epoch": epoch,
            "train_loss": means["loss"],
            **{f"train_{k}": v for k, v in means.items() if k != "loss"},
            "valid": vm,
            "sigmas": loss_fn.sigmas(),
            "lr": [g["lr"] for g in opt.param_groups],
            "train_seconds": train_seconds,
            "samples_per_second": n_seen / train_seconds,
        }
        improved = _better(vm[metric], prog.best, metric)
        if improved:
            prog.best, prog.best_epoch = vm[metric], epoch
            meta.sigmas = loss_fn.sigmas()
            meta.metrics = {"valid": vm, "epoch": epoch}
            save_checkpoint(out / "checkpoint", model, meta, tok)
        rec["best_epoch"] = prog.best_epoch
        prog.history.append(rec)
        prog.epoch = epoch
        with open(metrics_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        msg = (f"epoch {epoch}: train loss {rec['train_loss']:.4f}  valid MAE {vm['mae']:.4f} corr {vm['corr']:.4f} "
               f"acc2_non0 {vm['acc2_non0']:.4f}  {train_seconds:.1f}s{'  *best*' if improved else ''}")
        (tqdm.write if progress else log.info)(msg)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(state_file.parent / RUN_FILE, json.dumps(ident, indent=1))  # first: a state never lacks it
        _save_state(state_file, model, loss_fn, opt, sched, schedule, gen, prog)
        if epoch - prog.best_epoch >= cfg.patience:
            log.info("early stopping after epoch %d (best %d)", epoch, prog.best_epoch)
            break
    if prog.best_epoch == 0:
        raise ConfigError(f"training produced no valid checkpoint in {out} (valid metric {metric} was NaN)")
    result = finish(out, corpus, prog.history, progress=progress, device=device)
    if not cfg.keep_state:  # finished: the resume state (weights + Adam moments) is dead weight on disk
        state_file.unlink(missing_ok=True)
        (state_file.parent / RUN_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            state_file.parent.rmdir()
    return result


def finish(out: Path, corpus: Corpus, history: list[dict[str, Any]], progress: bool = False,
           device: str = "cpu") -> TrainResult:
    """Evaluate the chosen checkpoint on valid (and test when labelled), write result.json and plots."""
    pred = Predictor.load(out / "checkpoint", device=device)
    valid_clips = corpus.split("valid") or corpus.split("train")
    cal_error = ""
    if pred.meta.train.get("calibration", "none") != "none":
        try:
            pred.calibration = _fit_calibration(pred, corpus, out, progress)
        except InputError as exc:  # e.g. a model that predicts one sign only: keep the run, say why
            cal_error = str(exc)
            log.warning("no calibration: %s; the checkpoint scores uncalibrated", exc)
    vp = pred.predict_clips(valid_clips, progress=progress)
    valid = metrics_of(vp)
    raw_valid = metrics_of({**vp, "multimodal": vp["multimodal_raw"]}) if "multimodal_raw" in vp else None
    if raw_valid is not None:
        log.info("calibration (%s): valid MAE %.4f -> %.4f, Acc-7 %.4f -> %.4f", pred.calibration.describe(),
                 raw_valid["mae"], valid["mae"], raw_valid["acc7"], valid["acc7"])
    # as `senbert evaluate` reads it: every test clip (an unlabelled one is a labelled one's
    # neighbour for context), the metrics of the labelled ones
    test_clips = corpus.split("test")
    labelled = sum(c.label is not None for c in test_clips)
    test = metrics_of(pred.predict_clips(test_clips, progress=progress)) if labelled else None
    secs = [h["train_seconds"] for h in history]
    best_epoch = int(pred.meta.metrics.get("epoch", 0))
    result = {"valid": valid, "test": test, "best_epoch": best_epoch, "epochs_run": len(history),
              "seconds_per_epoch": float(np.mean(secs)) if secs else 0.0, "config": pred.meta.train}
    if raw_valid is not None:
        result["valid_uncalibrated"] = raw_valid
    if cal_error:
        result["calibration_error"] = cal_error
    update_meta(out / "checkpoint", metrics={"valid": valid, "test": test, "epoch": best_epoch})
    atomic_write(out / "result.json", json.dumps(result, indent=2))
    _plots(out, history, vp)
    return TrainResult(out, out / "checkpoint", best_epoch, valid, test, result["seconds_per_epoch"])


def _fit_calibration(pred: Predictor, corpus: Corpus, out: Path, progress: bool) -> Calibration:
    """Fit the final score's calibration on the labelled clips of ``corpus``'s train split (the
    main corpus only, not ``extra_train``; :func:`fit_on_train`, as a packed model's release
    fits its own) and store it in the checkpoint."""
    cal = fit_on_train(pred, corpus, kind=pred.meta.train["calibration"], progress=progress)
    update_meta(out / "checkpoint", calibration=cal.to_dict())
    return cal


def run_pretrain(cfg: TrainConfig, stage_dir: str | os.PathLike[str], progress: bool = True,
                 device: str = "cpu") -> Path:
    """The preliminary stage of ``cfg.pretrain``: the same model trained for ``cfg.pretrain_epochs``
    on the train splits of those corpora and selected on the first one's valid split. A finished
    stage in ``stage_dir`` is reused, an interrupted one resumed. Returns its checkpoint."""
    stage = Path(stage_dir)
    first, *more = cfg.pretrain
    context = cfg.context if cfg.pretrain_context is None else cfg.pretrain_context
    stage_cfg = replace(cfg, name=f"{cfg.name}-pretrain", pretrain=[], init_from="", extra_train=list(more),
                        epochs=cfg.pretrain_epochs, patience=cfg.pretrain_epochs,
                        # the stage is shared by main-stage variants: no auxiliary ordinal term
                        model=replace(cfg.model, ordinal_weight=0.0),
                        context=context, pretrain_context=None,
                        context_dropout=cfg.context_dropout if context > 0 else 0.0,
                        calibration="none")  # the main stage starts from its weights only
    if (stage / "result.json").exists():
        check_finished_run(stage, stage_cfg)
    else:
        log.info("preliminary stage: %d epoch(s) on %s -> %s", cfg.pretrain_epochs, ", ".join(cfg.pretrain), stage)
        train(load_corpus(first), stage_cfg, stage, resume=state_path(stage).exists(),
              progress=progress, device=device)
    return stage / "checkpoint"


def train_seeds(corpus: Corpus, cfg: TrainConfig, out_root: str | os.PathLike[str], seeds: list[int],
                progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """One run per seed under ``out_root/seed_<n>``; finished seeds are reused, unfinished resumed.

    Writes ``summary.json`` (per-seed metrics, mean and standard deviation) and ``summary.md``.
    """
    if not seeds:
        raise ConfigError(f"{out_root}: no seed to train (give at least one, e.g. --seeds 1)")
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    per_seed: dict[int, dict[str, Any]] = {}
    if cfg.pretrain and not cfg.init_from:  # one preliminary stage, shared by every seed
        cfg = replace(cfg, init_from=str(run_pretrain(cfg, root / "pretrain", progress=progress, device=device)))
    for seed in seeds:
        run_dir = root / f"seed_{seed}"
        run_cfg = replace(cfg, seed=seed, model=replace(cfg.model))
        if (run_dir / "result.json").exists():
            check_finished_run(run_dir, run_cfg)
            per_seed[seed] = json.loads((run_dir / "result.json").read_text())
            continue
        train(corpus, run_cfg, run_dir, resume=state_path(run_dir).exists(),
              progress=progress, device=device)
        per_seed[seed] = json.loads((run_dir / "result.json").read_text())
    summary: dict[str, Any] = {"config": cfg.name, "seeds": seeds,
                               "valid": summarize_seeds([r["valid"] for r in per_seed.values()]),
                               "seconds_per_epoch": summarize_seeds(
                                   [{"s": r["seconds_per_epoch"]} for r in per_seed.values()])["s"],
                               "per_seed": {str(k): v for k, v in per_seed.items()}}
    metric = cfg.select_metric
    best_seed = seeds[0]
    for seed in seeds[1:]:  # chosen on valid only, by the rule that picks a run's best epoch
        if _better(per_seed[seed]["valid"][metric], per_seed[best_seed]["valid"][metric], metric):
            best_seed = seed
    summary["best_seed"] = {"seed": best_seed, "checkpoint": str(root / f"seed_{best_seed}" / "checkpoint"),
                            "valid_" + metric: per_seed[best_seed]["valid"][metric]}
    tests = [r["test"] for r in per_seed.values() if r.get("test")]
    if len(tests) == len(per_seed):
        summary["test"] = summarize_seeds(tests)
    atomic_write(root / "summary.json", json.dumps(summary, indent=2))
    md = [f"# {cfg.name}: {len(seeds)} seed(s) {seeds}", "", "valid split (mean ± std over seeds)", "",
          format_table({cfg.name: summary["valid"]})]
    if "test" in summary:
        md += ["", "test split", "", format_table({cfg.name: summary["test"]})]
    md += ["", f"seconds per epoch: {summary['seconds_per_epoch']['mean']:.1f}",
           f"best seed on valid {metric}: {best_seed} ({summary['best_seed']['checkpoint']})"]
    atomic_write(root / "summary.md", "\n".join(md) + "\n")
    return summary
