"""Batch extraction: from video files to cached unaligned visual, acoustic and text sequences.

``extract_clip`` runs the configured extractors on one file (or serves it from the
:class:`~pipeline.cache.FeatureCache`); ``extract_batch`` runs many, in one process or in
worker processes, with a progress bar, and writes an errors file listing every clip that
failed and why. A second run serves cached clips and retries only the failed ones.

The configuration is typed (:class:`ExtractConfig`), loaded from ``configs/extract/<name>.yaml``
or a YAML path, and its :meth:`ExtractConfig.fingerprint` (settings + extractor and library
versions + model hashes) is part of every cache key.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin, get_type_hints

import numpy as np

from common.errors import ConfigError, InputError, SenbertError
from common.io import atomic_write_json
from extractors.acoustic import AcousticSettings
from extractors.media import VIDEO_EXTENSIONS, MediaSettings, open_media
from extractors.registry import FeatureSequence, available
from extractors.transcript import AsrSettings, set_thread_budget
from extractors.visual import VisualSettings
from pipeline.cache import CACHE_FORMAT, CacheEntry, FeatureCache, entries_to_corpus

if TYPE_CHECKING:
    from pipeline.data import Corpus

log = logging.getLogger(__name__)

EXTRACT_VERSION = "1.0"  # bump when the assembly of an entry changes
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "extract"


# --------------------------------------------------------------------------- configuration


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
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {where} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        items = [value] if isinstance(value, str) else list(value or [])
        return tuple(str(v) for v in items)
    if args and type(None) in args:  # Optional[X]
        if value is None or value == "none":
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(inner, value, where, source)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if tp is float:
            return float(value)
        if tp is int:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            return int(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {where} must be a {tp.__name__}, got {value!r}") from None
    return value


def _build(cls: Any, data: dict[str, Any], section: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: section {section!r} must be a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(f'{section}.{k}' for k in unknown)}; "
                          f"known in {section}: {sorted(names)}")
    hints = get_type_hints(cls)
    return cls(**{k: _coerce(hints[k], v, f"{section}.{k}", source) for k, v in data.items()})


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
    from common.io import sha256_file
    from extractors import acoustic, transcript, visual
    from extractors.assets import FACE_LANDMARKER_SHA256, packaged_whisper_digest

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
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_extract_config(name_or_path: str | os.PathLike[str] | None = None,
                        overrides: Sequence[str] = ()) -> ExtractConfig:
    """An :class:`ExtractConfig` from ``configs/extract/<name>.yaml`` or a YAML file path.

    ``overrides`` are ``section.key=value`` strings (values parsed as YAML), e.g.
    ``visual.fps=5``.
    """
    import yaml

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
        key, sep, raw = ov.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2:
            raise ConfigError(f"override {ov!r} must look like section.key=value (e.g. visual.fps=5)")
        data.setdefault(parts[0], {})
        if not isinstance(data[parts[0]], dict):
            raise ConfigError(f"override {ov!r}: {parts[0]!r} is not a section")
        data[parts[0]][parts[1]] = yaml.safe_load(raw)
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


# --------------------------------------------------------------------------- one clip


def _concat_on_grid(seqs: list[FeatureSequence]) -> FeatureSequence:
    """Concatenate audio sequences column-wise, interpolating the others onto the first's times."""
    if len(seqs) == 1:
        return seqs[0]
    base = seqs[0]
    cols = [base.values]
    names = list(base.names)
    for s in seqs[1:]:
        if s.values.shape[0] == base.values.shape[0] and np.allclose(s.times, base.times):
            cols.append(s.values)
        else:
            cols.append(np.stack([np.interp(base.times, s.times, s.values[:, j])
                                  for j in range(s.values.shape[1])], axis=1).astype(np.float32))
        names += s.names
    return FeatureSequence(np.concatenate(cols, axis=1), names, base.times, base.rate,
                           [w for s in seqs for w in s.warnings], {k: v for s in seqs for k, v in s.info.items()})


def run_extractors(path: Path, config: ExtractConfig, transcript: str | None = None
                   ) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the configured extractors on one file; the entry's fields and stage timings."""
    from extractors import registry
    from extractors.transcript import TextTokenizer

    ch = config.extractors
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    need_asr = transcript is None and ch.text is not None
    media = open_media(path, config.media, need_audio=bool(ch.audio) or need_asr, need_video=bool(ch.vision))
    timings["decode_audio"] = time.perf_counter() - t0
    versions: dict[str, Any] = {}
    warnings: list[str] = []

    audio = np.zeros((0, 0), np.float32)
    audio_names: list[str] = []
    audio_times = np.zeros((0,), np.float64)
    audio_rate = 0.0
    if ch.audio:
        t = time.perf_counter()
        seqs = []
        for name in ch.audio:
            ex = registry.create(name, config.acoustic)
            seqs.append(ex.extract(media))
            versions[f"audio:{name}"] = ex.describe()
        seq = _concat_on_grid(seqs)
        audio, audio_names, audio_times, audio_rate = seq.values, seq.names, seq.times, seq.rate
        warnings += seq.warnings
        timings["acoustic"] = time.perf_counter() - t

    words: list[dict[str, Any]] = []
    language = ""
    if transcript is not None:
        text, source = transcript, "given"
    elif ch.text:
        t = time.perf_counter()
        tr = registry.create(ch.text, config.asr)
        assert media.audio is not None
        result = tr.transcribe(media.audio, media.sample_rate)
        versions["text"] = tr.describe()
        text, source, language = result.text, ch.text, result.language
        words = [w.to_dict() for w in result.words]
        warnings += result.warnings
        timings["asr"] = time.perf_counter() - t
    else:
        text, source = "", "none"
    token_ids: list[int] = []
    if config.text.tokenizer:
        tok = TextTokenizer(config.text.tokenizer, config.text.allow_download)
        token_ids = tok(text, config.text.max_tokens)
        versions["tokenizer"] = tok.describe()

    vision = np.zeros((0, 0), np.float32)
    vision_names: list[str] = []
    vision_times = np.zeros((0,), np.float64)
    vision_rate = 0.0
    face_share = 0.0
    if ch.vision:
        t = time.perf_counter()
        vex = registry.create(ch.vision, config.visual)
        vseq = vex.extract(media)
        versions["vision"] = vex.describe()
        vision, vision_names, vision_times, vision_rate = vseq.values, vseq.names, vseq.times, vseq.rate
        face_share = float(vseq.info.get("face_share", 0.0))
        warnings += vseq.warnings
        timings["visual"] = time.perf_counter() - t
    warnings = list(media.warnings) + warnings
    timings["total"] = time.perf_counter() - t0
    fields = {
        "duration": media.duration, "audio": audio, "audio_names": audio_names, "audio_times": audio_times,
        "vision": vision, "vision_names": vision_names, "vision_times": vision_times,
        "transcript": text, "words": words, "face_share": face_share, "warnings": warnings,
        "token_ids": token_ids,
        "meta": {
            "transcript_source": source, "language": language, "audio_rate_hz": audio_rate,
            "vision_rate_hz": vision_rate, "media": media.info.to_dict(), "extractors": versions,
        },
    }
    return fields, timings


def cached_entry(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
                 transcript: str | None = None, clip_id: str | None = None) -> CacheEntry | None:
    """The cached entry of ``path`` under ``config``, or None; InputError when the file is missing."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found; check the path (quote it if it has spaces)")
    if p.is_dir():
        raise InputError(f"{p}: is a folder; pass it to extract_batch(list_videos(folder)) instead")
    if transcript is not None and not transcript.strip():
        transcript = None
    key = cache.make_key(cache.content_hash(p), config.fingerprint(), transcript)
    hit = cache.get(key)
    if hit is not None:
        hit.clip_id = clip_id or hit.clip_id or p.stem
        hit.source_path = str(p)
    return hit


def extract_clip(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
                 transcript: str | None = None, clip_id: str | None = None) -> CacheEntry:
    """Features of one file: from the cache when present, else extracted and cached.

    Raises a :class:`~common.errors.SenbertError` subclass naming the file on bad input.
    """
    p = Path(path)
    hit = cached_entry(p, config, cache, transcript, clip_id)
    if hit is not None:
        return hit
    if transcript is not None and not transcript.strip():
        transcript = None  # an empty given transcript counts as none: recognise the speech
    content = cache.content_hash(p)
    fp = config.fingerprint()
    key = cache.make_key(content, fp, transcript)
    t0 = time.perf_counter()
    try:
        fields, timings = run_extractors(p, config, transcript)
    except SenbertError:
        raise
    except MemoryError as e:
        raise SenbertError(f"{p}: out of memory while extracting; lower visual.max_side or use fewer workers") from e
    except Exception as e:  # noqa: BLE001 - an unexpected failure deep in a library
        log.debug("extraction of %s failed", p, exc_info=True)
        raise SenbertError(
            f"{p}: extraction failed unexpectedly ({type(e).__name__}: {e}); "
            "if the file plays normally, this is a bug: please report it with the file"
        ) from e
    t_write = time.perf_counter()
    meta = fields.pop("meta")
    meta.update({
        "config_name": config.name, "config": config.to_dict(), "fingerprint": fp,
        "versions": extractor_versions(config), "timings": timings,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
    })
    entry = CacheEntry(key=key, source_path=str(p), clip_id=clip_id or p.stem, content_sha256=content,
                       meta=meta, **fields)
    cache.put(entry)
    timings["write"] = time.perf_counter() - t_write
    timings["clip_total"] = time.perf_counter() - t0
    return entry


# --------------------------------------------------------------------------- corpora and folders


@dataclass
class CorpusItem:
    """One row of an MMSA-FET ``label.csv`` with its media path."""

    video_id: str
    clip_id: str
    text: str
    label: float | None
    mode: str
    path: Path

    @property
    def uid(self) -> str:
        """MMSA's clip id: ``<video_id>$_$<clip_id>``."""
        return f"{self.video_id}$_${self.clip_id}"

    @property
    def transcript(self) -> str | None:
        return self.text if self.text and self.text.strip() else None


def list_videos(folder: str | os.PathLike[str]) -> list[Path]:
    """Video files under ``folder`` (recursive, sorted; hidden folders skipped)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: folder not found; check the path")
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            out.append(p)
    return out


def read_mmsa_fet_corpus(label_csv: str | os.PathLike[str],
                         raw_dir: str | os.PathLike[str] | None = None) -> list[CorpusItem]:
    """Items of an MMSA-FET corpus: ``label.csv`` next to ``Raw/<video_id>/<clip_id>.<ext>``.

    ``raw_dir`` names the folder holding ``Raw/`` (or the ``Raw`` folder itself) when it is
    not next to the label file. A clip whose file is missing keeps the ``.mp4`` path;
    extracting it reports the missing file. Empty ``text`` means "no transcript": speech
    recognition runs for that clip.
    """
    path = Path(label_csv)
    if not path.is_file():
        raise InputError(f"{path}: label file not found; give the path of an MMSA-FET label.csv")
    base = Path(raw_dir) if raw_dir else path.parent
    raw = base / "Raw" if (base / "Raw").is_dir() or not raw_dir else base
    if raw_dir and not raw.is_dir():
        raise InputError(f"{raw_dir}: folder not found; give the folder that holds Raw/<video_id>/<clip_id>.<ext>")
    items: list[CorpusItem] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        missing = {"video_id", "clip_id"} - cols
        if missing:
            raise InputError(f"{path}: missing column(s) {sorted(missing)}; an MMSA-FET label.csv has "
                             "video_id, clip_id, text, label, mode")
        for i, row in enumerate(reader, start=2):
            vid, cid = (row.get("video_id") or "").strip(), (row.get("clip_id") or "").strip()
            if not vid or not cid:
                raise InputError(f"{path}: line {i} has an empty video_id or clip_id")
            label_raw = (row.get("label") or "").strip()
            try:
                label = float(label_raw) if label_raw else None
            except ValueError:
                raise InputError(f"{path}: line {i}: label {label_raw!r} is not a number") from None
            folder = raw / vid
            found = [p for p in sorted(folder.glob(f"{cid}.*")) if p.suffix.lower() in VIDEO_EXTENSIONS] \
                if folder.is_dir() else []
            items.append(CorpusItem(vid, cid, row.get("text") or "", label, (row.get("mode") or "test").strip(),
                                    found[0] if found else folder / f"{cid}.mp4"))
    return items


# --------------------------------------------------------------------------- batches


@dataclass
class BatchItem:
    path: Path
    transcript: str | None
    clip_id: str


def _as_item(x: Any) -> BatchItem:
    if isinstance(x, BatchItem):
        return x
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        return BatchItem(p, None, p.stem)
    if isinstance(x, tuple) and len(x) == 2:
        p = Path(x[0])
        return BatchItem(p, x[1], p.stem)
    if hasattr(x, "path"):
        p = Path(x.path)
        cid = getattr(x, "uid", None) or getattr(x, "clip_id", None) or p.stem
        return BatchItem(p, getattr(x, "transcript", None), str(cid))
    raise InputError(f"cannot extract {x!r}: give a path, a (path, transcript) pair or an object with .path")


@dataclass
class BatchReport:
    """What a batch did: counts, failures, timings and the entries in input order."""

    done: int = 0  # newly extracted
    cached: int = 0  # served from the cache
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    seconds_of_video: float = 0.0  # duration of every clip that succeeded
    seconds_extracted: float = 0.0  # duration of the newly extracted clips
    wall_seconds: float = 0.0
    entries: list[CacheEntry] = field(default_factory=list)  # succeeded clips, input order
    keys: list[str | None] = field(default_factory=list)  # per input item; None when failed
    finished_at: list[float | None] = field(default_factory=list)  # seconds after the start, per item
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over new clips
    errors_path: str = ""
    workers: int = 1

    @property
    def realtime_factor(self) -> float:
        """Seconds of newly extracted video per wall second."""
        return self.seconds_extracted / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.done} extracted, {self.cached} from cache, {len(self.failed)} failed "
            f"({self.wall_seconds:.1f} s wall, {self.workers} worker(s))",
        ]
        if self.seconds_extracted:
            lines.append(f"{self.seconds_extracted:.1f} s of video extracted: {self.realtime_factor:.2f}x real time")
        if self.failed:
            lines += failure_lines(self.failed, f"failures listed in {self.errors_path}; run again to retry them:")
        return "\n".join(lines)


def failure_lines(failed: Sequence[tuple[Any, str]], header: str, most: int = 20) -> list[str]:
    """A header and the first ``most`` failure messages of a batch, for a summary."""
    lines = [header] + [f"  {msg}" for _, msg in failed[:most]]
    if len(failed) > most:
        lines.append(f"  ... and {len(failed) - most} more")
    return lines


def warm_up(config: ExtractConfig) -> None:
    """Load every model the config uses (once per process) so clips do not pay for it."""
    from extractors import registry

    ch = config.extractors
    if ch.audio:
        for a in ch.audio:
            ex = registry.create(a, config.acoustic)
            ex.features(np.random.default_rng(0).normal(0, 0.01, 8000).astype(np.float32), 16000)
    if ch.text:
        tr = registry.create(ch.text, config.asr)
        if hasattr(tr, "model"):
            tr.model()
    if ch.vision:
        registry.create(ch.vision, config.visual).create_landmarker().close()


def _worker_init(config_dict: dict[str, Any], threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    set_thread_budget(threads)
    cfg = ExtractConfig.from_dict(config_dict, source="worker")
    _WORKER["config"] = cfg
    try:
        warm_up(cfg)
    except SenbertError as e:  # reported per clip instead
        _WORKER["warmup_error"] = str(e)


_WORKER: dict[str, Any] = {}


def _worker_run(cache_root: str, item: BatchItem) -> tuple[str, str, float, bool, dict[str, float]]:
    cfg: ExtractConfig = _WORKER["config"]
    try:
        e = extract_clip(item.path, cfg, FeatureCache(cache_root), item.transcript, item.clip_id)
        return "ok", e.key, e.duration, e.from_cache, dict(e.meta.get("timings", {})) if not e.from_cache else {}
    except SenbertError as err:
        return "error", str(err), 0.0, False, {}
    except Exception as err:  # noqa: BLE001 - keep the batch going
        return "error", f"{item.path}: unexpected {type(err).__name__}: {err}", 0.0, False, {}


def _message(item: BatchItem, err: BaseException) -> str:
    if isinstance(err, SenbertError):
        return str(err)
    tb = "".join(traceback.format_exception_only(type(err), err)).strip()
    return f"{item.path}: unexpected {tb}; this is likely a bug, please report it"


def resolve_workers(spec: int | str, n_items: int) -> int:
    """``auto``: one process per core, when the batch is long enough to pay for starting them
    (a worker loads every model first, several seconds); else the number given."""
    if isinstance(spec, str):
        if spec.strip().lower() != "auto":
            try:
                spec = int(spec)
            except ValueError:
                raise ConfigError(f"--workers must be a number or 'auto', got {spec!r}") from None
        else:
            return max(1, min(os.cpu_count() or 1, n_items // 6))
    if spec < 1:
        raise ConfigError(f"--workers must be at least 1, got {spec}")
    return int(spec)


def default_errors_path(cache: FeatureCache, config: ExtractConfig) -> Path:
    return cache.root / f"errors-{config.name}.json"


def write_errors(path: Path, config: ExtractConfig, failed: list[tuple[BatchItem, str]], n_items: int) -> None:
    atomic_write_json(path, {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.name, "fingerprint": config.fingerprint(), "items": n_items,
        "failed": [{"path": str(it.path), "clip_id": it.clip_id, "transcript": it.transcript, "message": msg}
                   for it, msg in failed],
    })


def read_errors(path: str | os.PathLike[str]) -> list[BatchItem]:
    """The failed items recorded in an errors file (to retry only those)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no errors file; run `senbert extract` first")
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
        return [BatchItem(Path(r["path"]), r.get("transcript"), r.get("clip_id") or Path(r["path"]).stem)
                for r in data.get("failed", [])]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{p}: not an errors file written by senbert extract ({e})") from e


def extract_batch(
    items: Iterable[Any],
    config: ExtractConfig,
    cache: FeatureCache,
    workers: int = 1,
    progress: bool = True,
    errors_path: str | os.PathLike[str] | None = None,
    load_entries: bool = True,
) -> BatchReport:
    """Extract many clips; failures do not stop the others and are written to an errors file.

    ``items``: paths, ``(path, transcript)`` pairs, or objects with ``.path`` (and optionally
    ``.transcript``, ``.uid`` or ``.clip_id``) such as :class:`CorpusItem`. With ``workers > 1``
    clips run in that many processes (spawned), each with ``cores // workers`` threads.
    ``load_entries=False`` keeps only keys (large corpora).
    """
    from tqdm import tqdm

    batch = [_as_item(x) for x in items]
    workers = max(1, int(workers))
    report = BatchReport(workers=workers)
    report.keys = [None] * len(batch)
    report.finished_at = [None] * len(batch)
    epath = Path(errors_path) if errors_path else default_errors_path(cache, config)
    report.errors_path = str(epath)
    failures: list[tuple[int, str]] = []
    results: dict[int, CacheEntry] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=len(batch), disable=not progress, unit="clip", desc=f"extract [{config.name}]",
               dynamic_ncols=True, file=sys.stderr)

    def record(i: int, key: str, duration: float, from_cache: bool, timings: dict[str, float],
               entry: CacheEntry | None) -> None:
        report.keys[i] = key
        report.finished_at[i] = time.perf_counter() - t0
        report.seconds_of_video += duration
        if from_cache:
            report.cached += 1
        else:
            report.done += 1
            report.seconds_extracted += duration
            for k, v in timings.items():
                report.stage_seconds[k] = report.stage_seconds.get(k, 0.0) + v
        if load_entries:
            e = entry if entry is not None else cache.get(key)
            if e is not None:
                e.clip_id = batch[i].clip_id
                results[i] = e

    def fail(i: int, msg: str) -> None:
        failures.append((i, msg))
        bar.set_postfix(failed=len(failures))

    todo: list[int] = []  # the parent serves cache hits; only misses go to the extractors
    for i, it in enumerate(batch):
        try:
            hit = cached_entry(it.path, config, cache, it.transcript, it.clip_id)
        except Exception as err:  # noqa: BLE001 - e.g. a missing file: recorded, the batch goes on
            fail(i, _message(it, err))
            bar.update(1)
            continue
        if hit is None:
            todo.append(i)
        else:
            record(i, hit.key, hit.duration, True, {}, hit)
            bar.update(1)

    if workers == 1 or len(todo) <= 1:
        set_thread_budget(0)
        for i in todo:
            it = batch[i]
            try:
                e = extract_clip(it.path, config, cache, it.transcript, it.clip_id)
                record(i, e.key, e.duration, e.from_cache, dict(e.meta.get("timings", {})), e)
            except Exception as err:  # noqa: BLE001 - one clip never stops the batch
                fail(i, _message(it, err))
            bar.update(1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        threads = max(1, (os.cpu_count() or 1) // workers)
        pending = list(todo)
        attempts = dict.fromkeys(pending, 0)
        while pending:
            retry: list[int] = []
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(config.to_dict(), threads)) as pool:
                futs = {pool.submit(_worker_run, str(cache.root), batch[i]): i for i in pending}
                for fut in as_completed(futs):
                    i = futs[fut]
                    try:
                        status, value, duration, from_cache, timings = fut.result()
                    except BrokenProcessPool:
                        attempts[i] += 1
                        if attempts[i] < 2:
                            retry.append(i)
                        else:
                            fail(i, f"{batch[i].path}: the worker process crashed while extracting this clip "
                                    "(twice); try it alone with --workers 1 to see the error")
                            bar.update(1)
                        continue
                    if status == "ok":
                        record(i, value, duration, from_cache, timings, None)
                    else:
                        fail(i, value)
                    bar.update(1)
            pending = sorted(retry)
    bar.close()
    report.wall_seconds = time.perf_counter() - t0
    failures.sort()
    report.failed = [(str(batch[i].path), msg) for i, msg in failures]
    report.entries = [results[i] for i in sorted(results)]
    write_errors(epath, config, [(batch[i], msg) for i, msg in failures], len(batch))
    return report


def corpus_from_batch(items: Sequence[Any], report: BatchReport, cache: FeatureCache) -> Corpus:
    """A Corpus of a batch's succeeded clips, with labels and splits from the items when they have them."""
    labels: dict[str, float] = {}
    splits: dict[str, str] = {}
    entries: list[CacheEntry] = []
    for x, key in zip(items, report.keys, strict=True):
        if key is None:
            continue
        it = _as_item(x)
        e = cache.get(key)
        if e is None:
            continue
        e.clip_id = it.clip_id
        entries.append(e)
        label = getattr(x, "label", None)
        if label is not None:
            labels[it.clip_id] = float(label)
        mode = getattr(x, "mode", None)
        if mode:
            splits[it.clip_id] = str(mode)
    return entries_to_corpus(entries, labels or None, splits or None, source=str(cache.root))


def default_cache_dir() -> Path:
    """``$SENBERT_CACHE``, else ``$SENBERT_HOME/features`` (``~/.cache/senbert/features``)."""
    from common.io import senbert_home

    env = os.environ.get("SENBERT_CACHE")
    return Path(env).expanduser() if env else senbert_home() / "features"


def corpus_from_videos(
    label_csv: str | os.PathLike[str],
    raw_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    extract_config: str | os.PathLike[str] | ExtractConfig | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Corpus:
    """Extract (or load from the cache) every clip of an MMSA-FET corpus; a labelled Corpus.

    Clips that fail are left out with a warning naming the errors file; when none succeed,
    :class:`InputError` lists the first failures.
    """
    items = read_mmsa_fet_corpus(label_csv, raw_dir)
    cfg = extract_config if isinstance(extract_config, ExtractConfig) else load_extract_config(extract_config)
    cache = FeatureCache(cache_dir or default_cache_dir())
    report = extract_batch(items, cfg, cache, workers=workers, progress=progress, load_entries=False)
    if report.failed:
        if len(report.failed) == len(items):
            first = "; ".join(m for _, m in report.failed[:3])
            raise InputError(f"{label_csv}: no clip could be extracted ({len(items)} failed, see "
                             f"{report.errors_path}): {first}")
        log.warning("%d of %d clips failed and are left out; see %s", len(report.failed), len(items),
                    report.errors_path)
    return corpus_from_batch(items, report, cache)
