"""Checkpoints: weights in safetensors plus one JSON file that describes everything else.

Layout of a checkpoint directory::

    model.safetensors   SenBERT weights (encoder included)
    senbert.json        model and run config, encoder name, feature names and dimensions,
                        normalisation statistics, loss sigmas, metrics, versions, and the
                        final score's calibration when the run fitted one
    encoder/            the encoder's transformers config and tokenizer files, so that a
                        checkpoint loads without the original encoder asset

Loading checks the weights against the config (a mismatch is refused with a clear message) and
:func:`check_corpus` checks a corpus's feature names and dimensions against the checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from common.errors import CheckpointMismatchError, InputError
from common.io import atomic_write
from model.config import ModelConfig
from model.senbert import SenBERT
from pipeline.corpora.clips import TEXT_STYLES, Corpus, Normalizer
from pipeline.models.encoders import (
    encoder_from_saved,
    encoder_identity,
    is_adapter_weight,
    load_encoder,
    lora_settings,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "senbert.json"
WEIGHTS_FILE = "model.safetensors"
#: suffix of the scales (one per row or column) of a weight stored in int8 (packed models: ``quantize_int8``)
QSCALE = ".qscale"


@dataclass
class CheckpointMeta:
    model: dict[str, Any]
    train: dict[str, Any]
    audio_names: list[str] = field(default_factory=list)
    vision_names: list[str] = field(default_factory=list)
    audio_norm: dict[str, list[float]] | None = None
    vision_norm: dict[str, list[float]] | None = None
    max_text_len: int = 50
    max_seq_len: int = 0
    context: int = 0  # neighbouring clips on each side whose transcripts are a second text segment
    max_context_len: int = 0
    text_style: str = "as_given"  # how transcripts are read before tokenising (pipeline/corpora/clips.py: styled)
    sigmas: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_source: str = ""
    feature_info: dict[str, Any] = field(default_factory=dict)  # extract config and frame rates
    base_encoder: dict[str, Any] | None = None  # adapter checkpoints: the frozen encoder they need (name, sha256)
    calibration: dict[str, Any] | None = None  # the final score's map fitted on the train split (calibration.py)
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def normalizers(self) -> tuple[Normalizer | None, Normalizer | None]:
        a = Normalizer.from_dict(self.audio_norm) if self.audio_norm else None
        v = Normalizer.from_dict(self.vision_norm) if self.vision_norm else None
        return a, v


def versions() -> dict[str, str]:
    import transformers  # heavy (seconds): only when a checkpoint is written

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def trained_state_keys(model: SenBERT) -> list[str]:
    """The names of what a checkpoint stores: every tensor, or, for an adapter model
    (``model.adapter: lora``), all but the frozen pretrained encoder's weights."""
    keys = list(model.state_dict())
    if model.cfg.adapter != "none":
        keys = [k for k in keys if not k.startswith("language.encoder.") or is_adapter_weight(k)]
    return keys


def trained_state(model: SenBERT, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """What a checkpoint stores (:func:`trained_state_keys`; an adapter model's frozen encoder
    weights come from the base encoder at load time). ``dtype`` stores floating-point tensors in
    another precision (e.g. fp16 to ship)."""
    full = model.state_dict()
    state = {k: full[k] for k in trained_state_keys(model)}
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().clone()
            for k, v in state.items()}


def quantize_int8(state: dict[str, torch.Tensor], keys: Any) -> dict[str, torch.Tensor]:
    """``state`` with the 2-D floating-point tensors named in ``keys`` stored in int8, one fp32
    scale per line along the longer side (a LoRA ``A``, rank x in: one per row; a ``B``, out x
    rank: one per column; so only rank-many scales): each line ``w`` becomes ``round(w / s)`` in
    [-127, 127] with ``s = max|w| / 127``, kept under the name plus :data:`QSCALE` in the shape
    that broadcasts over the tensor. The rounding error of a weight is at most ``s / 2``.
    :func:`read_weights` restores them. Other tensors are returned unchanged."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k in keys and v.is_floating_point() and v.dim() == 2:
            w = v.float()
            along = 1 if w.shape[1] >= w.shape[0] else 0  # reduce over the longer side
            scale = w.abs().amax(dim=along, keepdim=True) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero line stays zero
            out[k] = torch.round(w / scale).clamp_(-127, 127).to(torch.int8).contiguous()
            out[k + QSCALE] = scale.contiguous()
        else:
            out[k] = v
    return out


def is_quantized(weights: str | os.PathLike[str]) -> bool:
    """Whether a weights file holds int8 tensors written by :func:`quantize_int8`."""
    with safe_open(str(weights), framework="pt") as f:
        return any(k.endswith(QSCALE) for k in f.keys())


def load_weights_file(weights: str | os.PathLike[str], device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a weights file as stored; CheckpointMismatchError naming the file when it is
    not a readable safetensors file (damaged, truncated, another format)."""
    try:
        return load_file(str(weights), device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointMismatchError(f"{weights}: not a readable weights file, damaged or truncated "
                                      f"({str(exc).splitlines()[0][:200]})") from None


def read_weights(weights: str | os.PathLike[str], device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, int8 ones (:func:`quantize_int8`) restored to fp32."""
    state = load_weights_file(weights, device)
    for key in [k for k in state if k.endswith(QSCALE)]:
        scale, name = state.pop(key), key[: -len(QSCALE)]
        q = state.get(name)
        if (q is None or q.dtype != torch.int8 or q.dim() != 2 or scale.dim() != 2
                or scale.shape not in ((q.shape[0], 1), (1, q.shape[1]))):
            raise CheckpointMismatchError(f"{weights}: {key} does not belong to an int8 tensor {name!r} "
                                          f"with one scale per row or per column (a damaged or foreign file)")
        state[name] = q.float() * scale.float()
    return state


def save_checkpoint(directory: Path, model: SenBERT, meta: CheckpointMeta, tokenizer: Any | None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write a checkpoint atomically: into ``<dir>.partial`` first, then renamed over ``dir``."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if model.cfg.adapter != "none" or dtype is not None:
        save_file(trained_state(model, dtype), str(tmp / WEIGHTS_FILE))
    else:
        save_model(model, str(tmp / WEIGHTS_FILE))
    if model.cfg.uses_language:
        enc_dir = tmp / "encoder"
        model.language.encoder.config.save_pretrained(enc_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(enc_dir)
    atomic_write(tmp / META_FILE, json.dumps(meta.__dict__, indent=2, sort_keys=True))
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        directory.rename(old)
    tmp.rename(directory)
    if old.exists():
        shutil.rmtree(old)
    return directory


def resolve_checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder meant by ``path``: the folder itself, or the ``checkpoint/`` inside a
    run folder (checked cheaply: both files are there). The one place that decides it, for
    prediction, scoring, the flows and ``init_from``. Raises InputError when neither holds one."""
    p = Path(path).expanduser()
    for d in (p, p / "checkpoint"):
        if (d / WEIGHTS_FILE).is_file() and (d / META_FILE).is_file():
            return d
    if not p.exists():
        raise InputError(f"{p}: checkpoint not found; give a checkpoint folder (with {WEIGHTS_FILE} and "
                         f"{META_FILE}) or a run folder from `senbert train`")
    raise InputError(f"{p}: not a checkpoint folder, so not a SenBERT checkpoint (no {WEIGHTS_FILE} and {META_FILE} "
                     f"in it or in {p / 'checkpoint'}); give the folder `senbert train` wrote")


def read_meta(directory: Path) -> CheckpointMeta:
    directory = Path(directory)
    f = directory / META_FILE
    if not f.is_file():
        raise InputError(f"{directory}: not a SenBERT checkpoint (no {META_FILE})")
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        meta = CheckpointMeta(**raw)
        # what loading builds from it, checked here so that a damaged or foreign description is named
        meta.model_config  # noqa: B018
        meta.normalizers()
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise InputError(f"{f}: unreadable checkpoint description ({type(exc).__name__}: {exc})") from None
    if meta.text_style not in TEXT_STYLES:
        raise InputError(f"{f}: text_style {meta.text_style!r} is not one this version reads "
                         f"({', '.join(TEXT_STYLES)})")
    return meta


def update_meta(directory: Path, **changes: Any) -> CheckpointMeta:
    meta = read_meta(directory)
    for k, v in changes.items():
        setattr(meta, k, v)
    atomic_write(Path(directory) / META_FILE, json.dumps(meta.__dict__, indent=2, sort_keys=True))
    return meta


def load_checkpoint(directory: Path, device: str = "cpu") -> tuple[SenBERT, Any, CheckpointMeta]:
    """Rebuild the model from ``senbert.json`` and load its weights; returns (model, tokenizer, meta)."""
    directory = Path(directory)
    meta = read_meta(directory)
    cfg = meta.model_config
    encoder = tok = None
    hidden = 0
    adapter = cfg.adapter != "none"
    if adapter:
        encoder, tok, hidden = _adapter_base(directory, meta)
    elif cfg.uses_language:
        enc_dir = directory / "encoder"
        if not (enc_dir / "config.json").exists():
            raise InputError(f"{directory}: checkpoint lacks encoder/config.json")
        encoder, tok, hidden = encoder_from_saved(enc_dir)
    model = SenBERT(cfg, encoder, hidden)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(f"{directory}: checkpoint lacks {WEIGHTS_FILE}")
    try:
        if is_quantized(weights):  # a packed member with int8 adapters
            missing, unexpected = model.load_state_dict(read_weights(weights, device), strict=False)
        else:
            missing, unexpected = load_model(model, str(weights), strict=False, device=device)
    except (RuntimeError, SafetensorError) as exc:
        raise CheckpointMismatchError(
            f"{weights}: weights do not fit the model described in {META_FILE} ({str(exc).splitlines()[0][:300]})"
        ) from None
    if adapter:  # the frozen base weights are not stored: they came from the verified base encoder
        missing = [k for k in missing if not (k.startswith("language.encoder.") and not is_adapter_weight(k))]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{weights}: weights do not fit the model described in {META_FILE}: "
            f"missing {sorted(missing)[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {sorted(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    model.eval()
    return model, tok, meta


def _adapter_base(directory: Path, meta: CheckpointMeta) -> tuple[Any, Any, int]:
    """The pretrained encoder an adapter checkpoint was trained on, with fresh adapters: found by
    its recorded name (the packaged offline copy for a packaged name) and refused when the
    SHA-256 of its weights is not the one recorded at training time."""
    base = meta.base_encoder or {}
    name, want = base.get("name"), base.get("sha256")
    if not name:
        raise CheckpointMismatchError(f"{directory}: adapter checkpoint without a base_encoder entry in {META_FILE}")
    have = encoder_identity(name).get("sha256")
    if not want:
        log.warning("%s: its base encoder %r was not hashed when it was trained: it cannot be checked to be "
                    "the encoder its adapters were trained on", directory, name)
    if want and have != want:
        raise CheckpointMismatchError(
            f"{directory}: its adapters were trained on the encoder {name!r} whose weights have SHA-256 {want}, "
            f"but the {name!r} found here has {have or 'no readable weight file'}; install that exact base "
            "encoder (for a packaged name: `senbert assets install`) or use a fully fine-tuned checkpoint"
        )
    cfg = meta.model_config
    return load_encoder(name, "finetune", lora_settings(cfg))


def share_frozen_base(model: SenBERT, first: SenBERT) -> int:
    """Let ``model`` use ``first``'s tensors for the frozen base-encoder weights the two hold
    equal (members of one packed model, adapters trained on one verified base encoder), so an
    ensemble holds the base once instead of once per member. Only the weights that are equal
    element for element are shared: predictions are unchanged. Call it once both are on their
    device (moving a module copies its tensors). Returns the bytes no longer held twice."""
    if model.cfg.adapter == "none" or first.cfg.adapter == "none":
        return 0  # fully fine-tuned encoders differ from seed to seed
    ref = dict(first.named_parameters())
    shared = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            q = ref.get(name)
            if (not name.startswith("language.encoder.") or is_adapter_weight(name) or q is None
                    or p.data_ptr() == q.data_ptr() or p.shape != q.shape or p.dtype != q.dtype
                    or p.device != q.device or not torch.equal(p, q)):
                continue
            p.data = q.data
            shared += p.numel() * p.element_size()
    return shared


def check_corpus(meta: CheckpointMeta, corpus: Corpus, checkpoint: Path | str = "") -> None:
    """Refuse a corpus whose feature names or dimensions differ from the checkpoint's."""
    cfg = meta.model_config
    if not cfg.uses_sense:
        return
    for kind, have, want in (("acoustic", corpus.audio_names, meta.audio_names),
                             ("visual", corpus.vision_names, meta.vision_names)):
        if not have:
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} ({cfg.variant}) needs {kind} features, but {corpus.source} has none "
                "(a text-only corpus can only be used with a language_only checkpoint)"
            )
        if len(have) != len(want):
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} was trained on {len(want)} {kind} columns, but {corpus.source} has "
                f"{len(have)}; extract the features with the same extractor config as the training data"
            )
        if list(have) != list(want):
            diff = [(i, w, h) for i, (w, h) in enumerate(zip(want, have)) if w != h][:3]
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} expects {kind} columns in another order or with other names than "
                f"{corpus.source} (first differences: {diff}); use the extractor config the checkpoint was trained with"
            )
    _check_rates(meta, corpus.feature_info, str(corpus.source), checkpoint)


def _check_rates(meta: CheckpointMeta, have: dict[str, Any], source: str, checkpoint: Path | str) -> None:
    for key, what in (("visual_fps", "visual frame rate"), ("acoustic_rate_hz", "acoustic frame rate")):
        want_rate, have_rate = meta.feature_info.get(key), have.get(key)
        if want_rate is not None and have_rate is not None and float(want_rate) != float(have_rate):
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} was trained on features with a {what} of {want_rate} Hz "
                f"(extract config {meta.feature_info.get('extract_config')!r}), but {source} has {have_rate} Hz "
                f"(config {have.get('extract_config')!r}); extract with the checkpoint's config"
            )


def check_extract_config(meta: CheckpointMeta, info: dict[str, Any], checkpoint: Path | str = "") -> None:
    """Before any extraction: refuse an extract config whose frame rates differ from those the
    checkpoint was trained on (``info``: :func:`pipeline.features.cache.feature_info` of the config). Only
    a model with a sense block reads those features; the column names are checked after
    extraction (:func:`check_corpus`)."""
    if meta.model_config.uses_sense:
        _check_rates(meta, info, f"extract config {info.get('extract_config')!r}", checkpoint)
