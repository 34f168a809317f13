"""Run configuration: one typed object describes a training run and is saved next to its outputs.

Named configs live in ``configs/*.yaml`` (installed with the package as ``pipeline.configs`` and
found through :mod:`importlib.resources`). A YAML file may name a ``base:`` config whose values
it overrides (nested ``model:`` keys merge). Table II's ablations are the files
``configs/ablations/<name>.yaml``: ``--ablation NAME`` applies that file's ``model:`` overrides to
any config (:data:`ABLATIONS`; ``full`` is the model as configured).

``--set KEY=VALUE`` strings are parsed here, once, for the train and the extract configs
(:func:`parse_overrides`, :func:`apply_overrides`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from common.config_files import CONFIG_DIR, apply_overrides
from common.errors import ConfigError
from common.typed import coerce_fields
from model.config import ModelConfig
from pipeline.corpora.clips import TEXT_STYLES
from pipeline.models.calibration import KINDS as CALIBRATION_KINDS
from pipeline.models.metrics import SELECT_METRICS

ABLATIONS_DIR = CONFIG_DIR / "ablations"


class _Ablations(Mapping[str, dict[str, Any]]):
    """Table II of the paper, read from ``configs/ablations/<name>.yaml``: name -> the ``model:``
    overrides of that file (``full``: none). The YAML files are the single source."""

    def _table(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {"full": {}}
        for p in sorted(ABLATIONS_DIR.glob("*.yaml")):
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"ablation {p}: invalid YAML ({exc})") from None
            model = data.get("model", {}) if isinstance(data, dict) else None
            if not isinstance(model, dict):
                raise ConfigError(f"ablation {p}: expected a 'model:' mapping of overrides")
            table[p.stem] = model
        return table

    def __getitem__(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._table()[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __contains__(self, name: object) -> bool:
        return name in self._table()


#: Table II of the paper, as overrides of the model config (from ``configs/ablations/``).
ABLATIONS: Mapping[str, dict[str, Any]] = _Ablations()


#: The modalities ``modality_dropout`` may name.
MODALITY_DROPOUT_KEYS = ("audio", "vision", "text")


@dataclass
class TrainConfig:
    """Optimisation and data settings (section IV-C defaults) plus the model config."""

    model: ModelConfig = field(default_factory=ModelConfig)
    name: str = "custom"
    lr_encoder: float = 5e-5  # learning rate of the pretrained encoder
    lr_other: float = 1e-3  # learning rate of every other parameter (incl. the loss sigmas)
    layer_decay: float = 1.0  # layer-wise lr decay for the encoder (1.0 = off)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1  # linear warm-up over this share of steps, then linear decay to 0
    batch_size: int = 32
    eval_batch_size: int = 64
    epochs: int = 20
    patience: int = 5  # early stopping: epochs without improvement on the valid split
    select_metric: str = "mae"  # metric on valid used for early stopping and model choice
    grad_clip: float = 1.0  # max grad norm (0 = off)
    max_text_len: int = 50  # tokens, as MMSA
    max_seq_len: int = 0  # cap on audio/vision steps (0 = none)
    context: int = 0  # utterance context: the transcripts of this many neighbouring clips on each side
    #                   (same video, clip order) are a second text segment; never their labels (0 = off)
    max_context_len: int = 96  # tokens of that second segment (the clip's own text keeps max_text_len)
    context_dropout: float = 0.0  # training only: the probability that a clip is read without its context
    #                               (drawn per clip each epoch), so the model also serves clips given alone
    text_style: str = "as_given"  # how transcripts are read, in training and at scoring: "as_given", or "plain"
    #                               (lower case, no punctuation: CMU-MOSI's style; pipeline/corpora/clips.py: styled)
    calibration: str = "none"  # "quantile": after training, map the final score's distribution on the train
    #                            split onto its labels' (pipeline/models/calibration.py; reaches the extreme classes)
    seed: int = 1
    num_threads: int = 0  # torch intra-op threads (0 = torch's default)
    extra_train: list[str] = field(default_factory=list)  # extra training corpora (label.csv/pkl): their
    #                                                        train split is added to the training set
    init_from: str = ""  # a checkpoint (or run dir) whose matching weights initialise the model
    pretrain: list[str] = field(default_factory=list)  # preliminary corpora (label.csv/pkl): a first stage
    #                  trains on their train split (selected on their valid split), the main stage starts from it
    pretrain_epochs: int = 2  # epochs of the preliminary stage
    pretrain_context: int | None = None  # ``context`` of the preliminary stage (None: the same as ``context``;
    #                                      0: a stage without context, ~3x cheaper, then context on the main stage)
    precision: str = "auto"  # "auto": bf16 autocast where the hardware has native bf16 (pipeline/models/precision.py),
    #                          else fp32; "bf16" / "fp32" force one (weights and optimiser always stay fp32)
    group_by_length: bool = False  # batches of similar text length (shuffled), less padding per step
    keep_state: bool = False  # keep state/last.pt (weights + Adam moments, ~3x the checkpoint) once a run has
    #                           finished, so that --resume with more epochs can extend it; by default it goes
    modality_dropout: float | dict[str, float] = 0.0  # training only: per clip and step, the probability that
    #   a modality is dropped ({audio: p, vision: p, text: p}; a number: audio and vision). Dropped audio or
    #   vision becomes an empty sequence (mask all False), dropped text the empty string ([CLS] [SEP]). 0: off

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {self.precision!r}")
        if self.text_style not in TEXT_STYLES:
            raise ValueError(f"text_style must be one of {', '.join(TEXT_STYLES)}, not {self.text_style!r}")
        if self.calibration not in CALIBRATION_KINDS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_KINDS)}, not {self.calibration!r}")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {', '.join(SELECT_METRICS)}, not {self.select_metric!r}")
        head = {"language_mae": "language", "sense_mae": "sense"}.get(self.select_metric)
        if isinstance(self.model, ModelConfig) and head and not getattr(self.model, f"uses_{head}"):
            raise ValueError(f"select_metric {self.select_metric}: the {self.model.variant} model has no {head} head")
        if isinstance(self.model, ModelConfig) and head and head not in self.model.trained_tasks:
            raise ValueError(f"select_metric {self.select_metric}: the {head} head is not trained "
                             f"(use_{head}_task is false), so its MAE says nothing about the model")
        if self.context < 0 or self.max_context_len < 0:
            raise ValueError("context and max_context_len must be >= 0")
        if isinstance(self.context_dropout, bool) or not isinstance(self.context_dropout, (int, float)) \
                or not 0.0 <= self.context_dropout < 1.0:
            raise ValueError(f"context_dropout must be a number in [0, 1), not {self.context_dropout!r}")
        if self.pretrain_context is not None and (isinstance(self.pretrain_context, bool)
                                                  or not isinstance(self.pretrain_context, int)
                                                  or self.pretrain_context < 0):
            raise ValueError(f"pretrain_context must be null or an integer >= 0, not {self.pretrain_context!r}")
        self.modality_dropout_probs()  # checks the values

    def modality_dropout_probs(self) -> dict[str, float]:
        """``modality_dropout`` as ``{"audio": p, "vision": p, "text": p}``; ConfigError unless each
        p is a number in [0, 1) and the keys are modalities."""
        value = self.modality_dropout
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(MODALITY_DROPOUT_KEYS))
            if unknown:
                raise ConfigError(f"modality_dropout: unknown modality {unknown[0]!r}; "
                                  f"use {', '.join(MODALITY_DROPOUT_KEYS)}")
            probs = {k: value.get(k, 0.0) for k in MODALITY_DROPOUT_KEYS}
        else:
            probs = {"audio": value, "vision": value, "text": 0.0}
        for k, p in probs.items():
            ok = isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p < 1.0
            if not ok:
                where = f"modality_dropout.{k}" if isinstance(value, dict) else "modality_dropout"
                hint = (" (1 would drop the modality in every step; train without it by an ablation instead)"
                        if isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 1 else "")
                raise ConfigError(f"{where} must be a probability in [0, 1), got {p!r}{hint}")
        return {k: float(p) for k, p in probs.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> "TrainConfig":
        """A config from its mapping; ``source`` (the YAML file, the overrides) is named in every
        error. Each value is checked against its field's type (``common.typed.coerce_fields``)."""
        where = f"config {source}: " if source else "config: "
        d = copy.deepcopy(d)
        d.pop("base", None)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"{where}unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        model = d.pop("model", {}) or {}
        if not isinstance(model, dict):
            raise ConfigError(f"{where}'model' must be a mapping of model settings, got {model!r}")
        try:
            return cls(model=ModelConfig.from_dict(coerce_fields(ModelConfig, model, "model.")),
                       **coerce_fields(cls, d))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}{exc}") from None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _config_file(name_or_path: str) -> Path:
    """A config's YAML file: a path, or a name under configs/."""
    p = Path(name_or_path)
    return CONFIG_DIR / f"{name_or_path}.yaml" if not p.suffix else p


def _read_yaml(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    p = _config_file(name_or_path)
    if not p.is_file():
        names = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"config {name_or_path!r} not found (no file {p}); named configs: {names}")
    if str(p) in seen:
        raise ConfigError(f"config {p}: circular 'base' chain {seen}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {p}: expected a mapping at the top level")
    own_name = data.get("name")
    base = data.get("base")
    if base:
        data = _deep_merge(_read_yaml(str(base), seen + (str(p),)), data)
    try:
        default_name = str(p.relative_to(CONFIG_DIR).with_suffix(""))
    except ValueError:
        default_name = p.stem
    data["name"] = str(own_name or default_name)  # the leaf config's name, not its base's
    return data


def load_config(name_or_path: str = "quick", ablation: str | None = None,
                overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a named config or a YAML path, apply an ablation and explicit overrides.

    ``overrides`` keys may be dotted (``model.d_model``).
    """
    data = _read_yaml(name_or_path)
    if ablation:
        if ablation not in ABLATIONS:
            raise ConfigError(f"unknown ablation {ablation!r}; choose from {sorted(ABLATIONS)}")
        data = _deep_merge(data, {"model": ABLATIONS[ablation]})
        data["name"] = f"{data.get('name', 'custom')}+{ablation}"
    apply_overrides(data, overrides or {})
    data.pop("base", None)
    source = str(_config_file(name_or_path)) + (f" (overrides: {', '.join(overrides)})" if overrides else "")
    cfg = TrainConfig.from_dict(data, source)
    if ablation:
        undone = {k: getattr(cfg.model, k) for k, v in ABLATIONS[ablation].items() if getattr(cfg.model, k) != v}
        if undone:
            k, v = next(iter(undone.items()))
            raise ConfigError(f"config {source}: the override model.{k}={v!r} undoes the ablation {ablation!r} "
                              f"(model.{k}: {ABLATIONS[ablation][k]!r}); drop one of them")
        _check_ablation_applies(ablation, cfg, source)
    return cfg


def _check_ablation_applies(ablation: str, cfg: TrainConfig, source: str) -> None:
    """ConfigError when ``ablation`` would change nothing in ``cfg``: the full model or one of
    its auxiliary-task ablations asked of a config that trains a one-head variant, or an encoder
    ablation of a variant without the language block."""
    variant, over = cfg.model.variant, ABLATIONS[ablation]
    if variant != "full" and (ablation == "full" or "use_language_task" in over or "use_sense_task" in over):
        what = "is the full model" if ablation == "full" else "removes an auxiliary task of the full model's eq. (8)"
        raise ConfigError(f"{source}: --ablation {ablation} {what}, but this config trains the {variant} variant "
                          f"(one head, no auxiliary tasks), so it would change nothing; use a config of the full "
                          f"model (quick, default, paper) or --set model.variant=full")
    if "encoder_mode" in over and not cfg.model.uses_language:
        raise ConfigError(f"{source}: --ablation {ablation} changes the text encoder, but this config trains the "
                          f"{variant} variant, which has none, so it would change nothing")
