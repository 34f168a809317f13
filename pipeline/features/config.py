"""The extract configuration: which extractors run on a clip and with which settings.

The configuration is typed (:class:`ExtractConfig`: one frozen dataclass per section, values
coerced from YAML by the field types), loaded from ``configs/extract/<name>.yaml`` or a YAML
path, with ``section.key=value`` overrides parsed by :func:`common.config_files.parse_overrides`.
Its :meth:`ExtractConfig.fingerprint` (settings + extractor and library versions + model
hashes, :func:`extractor_versions`) is part of every feature-cache key: changing how it is
computed invalidates every cache (``tests/test_extract_config.py`` pins it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from common.config_files import CONFIG_DIR as TRAIN_CONFIG_DIR
from common.config_files import apply_overrides, parse_overrides
from common.errors import ConfigError
from common.io import sha256_file
from common.typed import coerce
from extractors import acoustic, transcript, visual
from extractors.acoustic import AcousticSettings
from extractors.assets import FACE_LANDMARKER_SHA256, packaged_whisper_digest
from extractors.media import MediaSettings
from extractors.registry import available
from extractors.transcript import AsrSettings
from extractors.visual import VisualSettings
from pipeline.features.cache import CACHE_FORMAT

EXTRACT_VERSION = "1.1"  # bump when the assembly of an entry changes (1.1: masked modalities, meta keys)
CONFIG_DIR = TRAIN_CONFIG_DIR / "extract"


@dataclass(frozen=True)
class ExtractorChoice:
    """Which registered extractor runs for each modality (None / empty: skip it)."""

    vision: str | None = "mediapipe_face"
    audio: tuple[str, ...] = ("librosa",)  # several: columns concatenated on the first's grid
    text: str | None = "faster_whisper"  # used only when the corpus gives no transcript


@dataclass(frozen=True)
class TextSettings:
    """Config section ``text``: tokenisation of the transcript (optional)."""

    tokenizer: str | None = None  # HF id or folder; None: the trainer tokenises with its encoder
    max_tokens: int = 0  # 0: no truncation
    allow_download: bool = False


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that determines the features of a clip (plus speed-only knobs)."""

    name: str = "default"
    extractors: ExtractorChoice = field(default_factory=ExtractorChoice)
    media: MediaSettings = field(default_factory=MediaSettings)
    visual: VisualSettings = field(default_factory=VisualSettings)
    acoustic: AcousticSettings = field(default_factory=AcousticSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    text: TextSettings = field(default_factory=TextSettings)

    # keys that change speed, never results: left out of the fingerprint
    RUNTIME_ONLY = (("asr", "cpu_threads"), ("media", "ffmpeg"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extractors"]["audio"] = list(self.extractors.audio)
        return d

    def fingerprint(self) -> str:
        """Stable hash of the settings, extractor/library versions and model hashes."""
        d = self.to_dict()
        d.pop("name")
        for section, key in self.RUNTIME_ONLY:
            d[section].pop(key, None)
        payload = {"config": d, "versions": extractor_versions(self), "cache_format": CACHE_FORMAT}
        blob = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ExtractConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: an extract config must be a mapping of sections")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; known: {sorted(sections)}")
        kwargs: dict[str, Any] = {}
        hints = get_type_hints(cls)
        for name, value in data.items():
            if name == "name":
                kwargs["name"] = str(value)
                continue
            sub = hints[name]
            kwargs[name] = _build(sub, value or {}, name, source)
        return cls(**kwargs)

    def replace(self, **sections: Any) -> ExtractConfig:
        return dataclasses.replace(self, **sections)


def _coerce(tp: Any, value: Any, where: str, source: str) -> Any:
    try:
        return coerce(tp, value, where)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _build(cls: Any, data: dict[str, Any], section: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: section {section!r} must be a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(f'{section}.{k}' for k in unknown)}; "
                          f"known in {section}: {sorted(names)}")
    hints = get_type_hints(cls)
    try:
        return cls(**{k: _coerce(hints[k], v, f"{section}.{k}", source) for k, v in data.items()})
    except ValueError as exc:  # a section's own check (its __post_init__) of values that go together
        raise ConfigError(f"{source}: {section}.{exc}") from None


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


_VERSIONS_MEMO: dict[str, dict[str, Any]] = {}


def extractor_versions(config: ExtractConfig) -> dict[str, Any]:
    """Extractor code versions, library versions and model hashes that shape the output.

    Cheap: packaged models contribute their pinned hashes; an explicit model file is hashed
    once per process.
    """
    memo = json.dumps(config.to_dict(), sort_keys=True, default=str)
    if memo in _VERSIONS_MEMO:
        return _VERSIONS_MEMO[memo]
    ch = config.extractors
    out: dict[str, Any] = {"extract": EXTRACT_VERSION}
    if ch.vision:
        face = FACE_LANDMARKER_SHA256
        if config.visual.model:
            p = Path(config.visual.model).expanduser()
            face = sha256_file(p) if p.is_file() else f"missing:{p}"
        out["vision"] = {"name": ch.vision, "version": visual.VERSION, "mediapipe": _pkg_version("mediapipe"),
                         "model_sha256": face}
    for a in ch.audio:
        lib = "opensmile" if a == "egemaps" else "librosa"
        out[f"audio:{a}"] = {"version": acoustic.VERSION, lib: _pkg_version(lib), "numpy": _pkg_version("numpy")}
    if ch.text:
        t: dict[str, Any] = {"name": ch.text, "version": transcript.VERSION}
        if ch.text == "faster_whisper":
            t.update({"faster-whisper": _pkg_version("faster-whisper"), "ctranslate2": _pkg_version("ctranslate2")})
            m = config.asr.model
            if m and Path(m).expanduser().is_dir():
                t["model_sha256"] = sha256_file(Path(m).expanduser() / "model.bin") \
                    if (Path(m).expanduser() / "model.bin").is_file() else f"missing:{m}"
            else:
                t["model_sha256"] = m or packaged_whisper_digest()
        elif ch.text == "pocketsphinx":
            t["pocketsphinx"] = _pkg_version("pocketsphinx")
        out["text"] = t
    if config.text.tokenizer:
        out["tokenizer"] = {"spec": config.text.tokenizer, "transformers": _pkg_version("transformers")}
    _VERSIONS_MEMO[memo] = out
    return out


def config_names() -> list[str]:
    """The named extract configs (``configs/extract/<name>.yaml``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_extract_config(name_or_path: str | os.PathLike[str] | None = None,
                        overrides: Sequence[str] = ()) -> ExtractConfig:
    """An :class:`ExtractConfig` from ``configs/extract/<name>.yaml`` or a YAML file path.

    ``overrides`` are ``section.key=value`` strings (values parsed as YAML), e.g.
    ``visual.fps=5``.
    """
    spec = "default" if name_or_path is None else str(name_or_path)
    p = Path(spec).expanduser()
    if p.suffix in (".yaml", ".yml") or p.is_file():
        path = p
    else:
        path = CONFIG_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise ConfigError(f"extract config {spec!r} not found ({path}); name one of {config_names()} "
                          "or give the path of a YAML file")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an extract config must be a mapping of sections")
    data.setdefault("name", path.stem)
    for ov in overrides:
        key, sep, _ = ov.partition("=")
        if not sep or len(key.strip().split(".")) != 2:
            raise ConfigError(f"override {ov!r} must look like section.key=value (e.g. visual.fps=5)")
    apply_overrides(data, parse_overrides(overrides))  # the train config's --set parser
    cfg = ExtractConfig.from_dict(data, source=str(path))
    validate_config(cfg, str(path))
    return cfg


def validate_config(cfg: ExtractConfig, source: str = "config") -> None:
    ch = cfg.extractors
    for modality, names in (("vision", [ch.vision]), ("audio", list(ch.audio)), ("text", [ch.text])):
        for n in names:
            if n and n not in available(modality):
                raise ConfigError(f"{source}: extractors.{modality} {n!r} is not a {modality} extractor; "
                                  f"known: {available(modality)}")
    if not ch.vision and not ch.audio and not ch.text:
        raise ConfigError(f"{source}: every extractor is off; enable at least one")
    if cfg.visual.fps < 0 or cfg.acoustic.rate_hz <= 0:
        raise ConfigError(f"{source}: visual.fps must be >= 0 and acoustic.rate_hz > 0")
    if ch.text in ("faster_whisper", "pocketsphinx") and cfg.media.sample_rate != 16000:
        raise ConfigError(f"{source}: the speech recognisers need media.sample_rate: 16000")
    if cfg.acoustic.rate_hz > cfg.media.sample_rate / 8:
        raise ConfigError(f"{source}: acoustic.rate_hz {cfg.acoustic.rate_hz} is too high for "
                          f"media.sample_rate {cfg.media.sample_rate}")
