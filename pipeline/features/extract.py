"""One clip: run the configured extractors on a file, or serve its features from the cache.

:func:`media_key` computes a clip's feature-cache key (file content + the extract config's
fingerprint + the given transcript); :func:`cached_entry` looks it up; :func:`extract_clip`
extracts and stores it when it is missing. Batches of clips: :mod:`pipeline.features.pool`.

**Sparse vision.** A consumer that does not read the visual features (a text-only model
scoring files) asks for ``sparse_vision``: the face landmarker then runs at
:data:`SPARSE_VISION_FPS` (enough for the report's face share) instead of the config's rate.
Such an entry is stored under its own key (:func:`sparse_key`) and records what was computed
(``meta["sparse"]``). A later consumer that reads vision finds it and runs only the visual
stage at the config's rate: the transcript, words and acoustic features are taken from it, and
the complete entry is stored under the clip's normal key (every entry stays immutable). A
complete entry serves a sparse request too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError, SenbertError
from common.process import exit_with_parent
from extractors import registry
from extractors.media import ffmpeg_version, find_ffmpeg, open_media
from extractors.registry import FeatureSequence
from extractors.transcript import TextTokenizer
from pipeline.features.cache import CacheEntry, FeatureCache
from pipeline.features.config import ExtractConfig, extractor_versions

log = logging.getLogger(__name__)

#: Frames a second of the sparse visual pass (``sparse_vision``): the report's face share only.
SPARSE_VISION_FPS = 1.0


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


def _empty(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A masked modality: no step, but its columns (so every entry of a config has the same ones)."""
    return np.zeros((0, len(names)), np.float32), np.zeros((0,), np.float64)


def _visual_stage(media: Any, config: ExtractConfig, fps: float | None = None) -> dict[str, Any]:
    """The visual extractor on decoded media (at ``fps`` instead of the config's rate when given):
    the entry's vision fields, plus ``masked`` (why there is no vision, or None), ``warnings``,
    and ``version`` and ``seconds`` when it ran."""
    name = config.extractors.vision
    settings = config.visual if fps is None else dataclasses.replace(config.visual, fps=min(config.visual.fps, fps))
    out: dict[str, Any] = {"vision": np.zeros((0, 0), np.float32), "vision_names": [],
                           "vision_times": np.zeros((0,), np.float64), "vision_rate": 0.0, "face_share": 0.0,
                           "masked": media.masked.get("vision"), "warnings": []}
    if not name:
        return out
    if out["masked"]:
        out["vision_names"] = registry.create(name, settings).columns()
        out["vision"], out["vision_times"] = _empty(out["vision_names"])
        return out
    t = time.perf_counter()
    vex = registry.create(name, settings)
    vseq = vex.extract(media)
    out.update(vision=vseq.values, vision_names=vseq.names, vision_times=vseq.times, vision_rate=vseq.rate,
               face_share=float(vseq.info.get("face_share", 0.0)), warnings=list(vseq.warnings),
               masked=vseq.info.get("masked"),  # e.g. no face in any frame (visual.on_no_face: mask)
               version=vex.describe(), seconds=time.perf_counter() - t)
    return out


def run_extractors(path: Path, config: ExtractConfig, transcript: str | None = None,
                   vision_fps: float | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the configured extractors on one file; the entry's fields and stage timings.

    ``vision_fps`` runs the visual extractor at that rate instead of the config's (the sparse
    pass: ``meta["sparse"]`` records it when frames were sampled).

    A modality whose stream is missing or silent (``DecodedMedia.masked``, see
    :func:`~extractors.media.open_media`) is masked: its extractors do not run (nor speech
    recognition, for audio) and it is stored with no step but its extractors' column names.
    ``meta["modalities"]`` says which modalities the entry holds (text: a non-empty
    transcript; audio / vision: at least one step) and ``meta["masked"]`` why each missing one
    is missing (None for one that is present).
    """
    ch = config.extractors
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    need_asr = transcript is None and ch.text is not None
    media = open_media(path, config.media, need_audio=bool(ch.audio) or need_asr, need_video=bool(ch.vision))
    timings["decode_audio"] = time.perf_counter() - t0
    versions: dict[str, Any] = {}
    warnings: list[str] = []
    audio_masked, vision_masked = media.masked.get("audio"), media.masked.get("vision")

    audio = np.zeros((0, 0), np.float32)
    audio_names: list[str] = []
    audio_times = np.zeros((0,), np.float64)
    audio_rate = 0.0
    if ch.audio and audio_masked:
        audio_names = [n for name in ch.audio for n in registry.create(name, config.acoustic).columns()]
        audio, audio_times = _empty(audio_names)
    elif ch.audio:
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
    text_masked: str | None = None
    if transcript is not None:
        text, source = transcript, "given"
    elif ch.text and audio_masked:
        text, source, text_masked = "", "none", audio_masked
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
        if not text.strip():
            text_masked = "no speech detected"
    else:
        text, source = "", "none"
        text_masked = "no transcript given and no speech recogniser in the config"
    token_ids: list[int] = []
    if config.text.tokenizer:
        tok = TextTokenizer(config.text.tokenizer, config.text.allow_download)
        token_ids = tok(text, config.text.max_tokens)
        versions["tokenizer"] = tok.describe()

    vis = _visual_stage(media, config, vision_fps)
    visual_warnings = list(vis["warnings"])
    vision_masked = vis.pop("masked") or vision_masked
    if "version" in vis:
        versions["vision"] = vis.pop("version")
    if "seconds" in vis:
        timings["visual"] = vis.pop("seconds")
    warnings += vis.pop("warnings")
    vision, vision_names, vision_times = vis["vision"], vis["vision_names"], vis["vision_times"]
    vision_rate, face_share = vis["vision_rate"], vis["face_share"]
    warnings = list(media.warnings) + warnings
    timings["total"] = time.perf_counter() - t0
    modalities = {"text": bool(text.strip()), "audio": audio.shape[0] > 0, "vision": vision.shape[0] > 0}
    masked = {
        "audio": None if modalities["audio"] else audio_masked or (
            "no audio extractor in the config" if not ch.audio else "no audio steps"),
        "vision": None if modalities["vision"] else vision_masked or (
            "no visual extractor in the config" if not ch.vision else "no video frames"),
        "text": None if modalities["text"] else text_masked or "empty transcript",
    }
    fields = {
        "duration": media.duration, "audio": audio, "audio_names": audio_names, "audio_times": audio_times,
        "vision": vision, "vision_names": vision_names, "vision_times": vision_times,
        "transcript": text, "words": words, "face_share": face_share, "warnings": warnings,
        "token_ids": token_ids,
        "meta": {
            "transcript_source": source, "language": language, "audio_rate_hz": audio_rate,
            "vision_rate_hz": vision_rate, "media": media.info.to_dict(), "extractors": versions,
            "ffmpeg": ffmpeg_version(find_ffmpeg(config.media.ffmpeg)),  # decodes, resamples, scales
            "modalities": modalities, "masked": masked,
        },
    }
    if vision_fps is not None and ch.vision and not media.masked.get("vision"):
        fields["meta"]["sparse"] = {"vision_fps": float(vision_rate), "warnings": visual_warnings}
    return fields, timings


@dataclass(frozen=True)
class MediaKey:
    """Where one clip's features live in the cache: the feature-cache key and what it is made of."""

    path: Path
    transcript: str | None  # None: recognise the speech (an empty given transcript counts as none)
    content_sha256: str
    fingerprint: str
    key: str


def media_key(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
             transcript: str | None = None) -> MediaKey:
    """The feature-cache key of ``path`` under ``config`` (file content + config fingerprint + the
    given transcript); InputError when the file is missing or is a folder.

    The one place the key is computed: :func:`cached_entry`, :func:`extract_clip` and the
    Prefect task's cache key (``flows/build_features.py``) all use it.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found; check the path (quote it if it has spaces)")
    if p.is_dir():
        raise InputError(f"{p}: is a folder; pass it to extract_batch(list_videos(folder)) instead")
    if transcript is not None and not transcript.strip():
        transcript = None
    content, fp = cache.content_hash(p), config.fingerprint()
    return MediaKey(p, transcript, content, fp, cache.make_key(content, fp, transcript))


def sparse_key(key: str) -> str:
    """The cache key of a clip's entry whose visual stage ran sparse (:data:`SPARSE_VISION_FPS`),
    next to its normal ``key``."""
    return hashlib.sha256(f"{key}|vision@{SPARSE_VISION_FPS:g}fps".encode()).hexdigest()[:40]


def _sparse_applies(config: ExtractConfig, sparse_vision: bool) -> bool:
    return sparse_vision and bool(config.extractors.vision) and config.visual.fps > SPARSE_VISION_FPS


def serving_key(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
                transcript: str | None = None, sparse_vision: bool = False) -> str:
    """The key of the entry that serves this request, present or to be made: the clip's normal
    key, or (``sparse_vision``, no complete entry yet) its :func:`sparse_key`."""
    key = media_key(path, config, cache, transcript).key
    if _sparse_applies(config, sparse_vision) and not cache.has(key):
        return sparse_key(key)
    return key


def _hit(ck: MediaKey, cache: FeatureCache, clip_id: str | None, sparse_ok: bool = False) -> CacheEntry | None:
    """The complete entry of ``ck``, else (``sparse_ok``) its sparse one, else None."""
    hit = cache.get(ck.key)
    if hit is None and sparse_ok:
        hit = cache.get(sparse_key(ck.key))
    if hit is not None:
        hit.clip_id = clip_id or hit.clip_id or ck.path.stem
        hit.source_path = str(ck.path)
    return hit


def cached_entry(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
                 transcript: str | None = None, clip_id: str | None = None,
                 sparse_vision: bool = False) -> CacheEntry | None:
    """The cached entry of ``path`` under ``config``, or None; InputError when the file is missing.
    With ``sparse_vision``, an entry whose visual stage ran sparse serves too."""
    return _hit(media_key(path, config, cache, transcript), cache, clip_id, _sparse_applies(config, sparse_vision))


def _unexpected(p: Path, e: Exception) -> SenbertError:
    log.debug("extraction of %s failed", p, exc_info=True)
    if isinstance(e, MemoryError):
        return SenbertError(f"{p}: out of memory while extracting; lower visual.max_side or use fewer workers")
    return SenbertError(f"{p}: extraction failed unexpectedly ({type(e).__name__}: {e}); "
                        "if the file plays normally, this is a bug: please report it with the file")


def _with_full_vision(sparse: CacheEntry, ck: MediaKey, config: ExtractConfig) -> tuple[dict[str, Any], dict]:
    """The fields of ``sparse`` with the visual stage run again at the config's rate (nothing else
    is extracted again: decoding the video and the face landmarker only)."""
    t0 = time.perf_counter()
    media = open_media(ck.path, config.media, need_audio=False, need_video=True)
    vis = _visual_stage(media, config)
    meta = {k: v for k, v in sparse.meta.items() if k != "sparse"}
    meta["extractors"] = {**meta.get("extractors", {}), **({"vision": vis["version"]} if "version" in vis else {})}
    meta["vision_rate_hz"] = vis["vision_rate"]
    meta["modalities"] = {**meta.get("modalities", {}), "vision": vis["vision"].shape[0] > 0}
    meta["masked"] = {**meta.get("masked", {}), "vision": None if vis["vision"].shape[0] else
                      vis["masked"] or "no video frames"}
    meta["completed_from"] = {"key": sparse.key, "vision_fps": sparse.meta.get("sparse", {}).get("vision_fps")}
    timings = {"visual": vis.get("seconds", 0.0), "total": time.perf_counter() - t0}
    meta["timings"] = {**meta.get("timings", {}), "visual": timings["visual"]}
    old_visual = sparse.meta.get("sparse", {}).get("warnings", [])  # the sparse pass's, replaced
    fields = {
        "duration": sparse.duration, "audio": sparse.audio, "audio_names": sparse.audio_names,
        "audio_times": sparse.audio_times, "vision": vis["vision"], "vision_names": vis["vision_names"],
        "vision_times": vis["vision_times"], "transcript": sparse.transcript, "words": sparse.words,
        "face_share": vis["face_share"], "token_ids": sparse.token_ids, "meta": meta,
        "warnings": [w for w in sparse.warnings if w not in old_visual] + vis["warnings"],
    }
    return fields, timings


def extract_clip(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
                 transcript: str | None = None, clip_id: str | None = None,
                 sparse_vision: bool = False) -> CacheEntry:
    """Features of one file: from the cache when present, else extracted and cached.

    ``sparse_vision``: the caller does not read the visual features, so the visual stage may run
    at :data:`SPARSE_VISION_FPS` (module docstring); a complete entry serves it too. Without it,
    an entry of an earlier sparse extraction is completed by running the visual stage alone.
    Raises a :class:`~common.errors.SenbertError` subclass naming the file on bad input.
    """
    exit_with_parent()  # in a pool worker (e.g. Prefect's process task runner): end with the parent
    ck = media_key(path, config, cache, transcript)
    sparse = _sparse_applies(config, sparse_vision)
    hit = _hit(ck, cache, clip_id, sparse_ok=True)
    if hit is not None and (sparse or not hit.meta.get("sparse")):
        return hit
    p = ck.path
    t0 = time.perf_counter()
    try:
        if hit is not None:  # a sparse entry, and the caller reads vision: the visual stage alone
            fields, timings = _with_full_vision(hit, ck, config)
        else:
            fields, timings = run_extractors(p, config, ck.transcript, SPARSE_VISION_FPS if sparse else None)
    except SenbertError:
        raise
    except Exception as e:  # noqa: BLE001 - an unexpected failure deep in a library
        raise _unexpected(p, e) from e
    t_write = time.perf_counter()
    meta = fields.pop("meta")
    if hit is None:
        meta.update({
            "config_name": config.name, "config": config.to_dict(), "fingerprint": ck.fingerprint,
            "versions": extractor_versions(config), "timings": timings,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
        })
    else:
        meta["completed"] = datetime.now(UTC).isoformat(timespec="seconds")
    key = sparse_key(ck.key) if meta.get("sparse") else ck.key
    entry = CacheEntry(key=key, source_path=str(p), clip_id=clip_id or p.stem, content_sha256=ck.content_sha256,
                       meta=meta, **fields)
    cache.put(entry)
    timings["write"] = time.perf_counter() - t_write
    timings["clip_total"] = time.perf_counter() - t0
    return entry
