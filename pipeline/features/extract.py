"""One clip: run the configured extractors on a file, or serve its features from the cache.

:func:`media_key` computes a clip's feature-cache key (file content + the extract config's
fingerprint + the given transcript); :func:`cached_entry` looks it up; :func:`extract_clip`
extracts and stores it when it is missing. Batches of clips: :mod:`pipeline.features.pool`.
"""

from __future__ import annotations

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


def run_extractors(path: Path, config: ExtractConfig, transcript: str | None = None
                   ) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the configured extractors on one file; the entry's fields and stage timings.

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

    vision = np.zeros((0, 0), np.float32)
    vision_names: list[str] = []
    vision_times = np.zeros((0,), np.float64)
    vision_rate = 0.0
    face_share = 0.0
    if ch.vision and vision_masked:
        vision_names = registry.create(ch.vision, config.visual).columns()
        vision, vision_times = _empty(vision_names)
    elif ch.vision:
        t = time.perf_counter()
        vex = registry.create(ch.vision, config.visual)
        vseq = vex.extract(media)
        versions["vision"] = vex.describe()
        vision, vision_names, vision_times, vision_rate = vseq.values, vseq.names, vseq.times, vseq.rate
        vision_masked = vseq.info.get("masked")  # e.g. no face in any frame (visual.on_no_face: mask)
        face_share = float(vseq.info.get("face_share", 0.0))
        warnings += vseq.warnings
        timings["visual"] = time.perf_counter() - t
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


def _hit(ck: MediaKey, cache: FeatureCache, clip_id: str | None) -> CacheEntry | None:
    hit = cache.get(ck.key)
    if hit is not None:
        hit.clip_id = clip_id or hit.clip_id or ck.path.stem
        hit.source_path = str(ck.path)
    return hit


def cached_entry(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
                 transcript: str | None = None, clip_id: str | None = None) -> CacheEntry | None:
    """The cached entry of ``path`` under ``config``, or None; InputError when the file is missing."""
    return _hit(media_key(path, config, cache, transcript), cache, clip_id)


def extract_clip(path: str | os.PathLike[str], config: ExtractConfig, cache: FeatureCache,
                 transcript: str | None = None, clip_id: str | None = None) -> CacheEntry:
    """Features of one file: from the cache when present, else extracted and cached.

    Raises a :class:`~common.errors.SenbertError` subclass naming the file on bad input.
    """
    exit_with_parent()  # in a pool worker (e.g. Prefect's process task runner): end with the parent
    ck = media_key(path, config, cache, transcript)
    hit = _hit(ck, cache, clip_id)
    if hit is not None:
        return hit
    p = ck.path
    t0 = time.perf_counter()
    try:
        fields, timings = run_extractors(p, config, ck.transcript)
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
        "config_name": config.name, "config": config.to_dict(), "fingerprint": ck.fingerprint,
        "versions": extractor_versions(config), "timings": timings,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
    })
    entry = CacheEntry(key=ck.key, source_path=str(p), clip_id=clip_id or p.stem, content_sha256=ck.content_sha256,
                       meta=meta, **fields)
    cache.put(entry)
    timings["write"] = time.perf_counter() - t_write
    timings["clip_total"] = time.perf_counter() - t0
    return entry
