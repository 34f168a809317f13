"""The media inputs of a command and the corpora made of extracted features.

- :func:`list_media` and :func:`collect_inputs`: video and audio files, folders and MMSA-FET
  corpora named on the command line (the inputs of ``senbert extract``, ``senbert score`` and the
  flows);
- :func:`corpus_from_videos`: an MMSA-FET corpus whose clips are extracted (or read from the
  feature cache) on the way;
- :func:`entries_to_corpus` and :func:`corpus_from_batch`: a :class:`~pipeline.corpora.clips.Corpus`
  of feature-cache entries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from common.errors import InputError
from extractors.media import AUDIO_EXTENSIONS, MEDIA_EXTENSIONS
from pipeline.corpora.clips import Clip, Corpus
from pipeline.corpora.label_csv import CorpusItem, read_mmsa_fet_corpus
from pipeline.features.cache import CacheEntry, FeatureCache, check_same_columns, feature_info
from pipeline.features.config import ExtractConfig, load_extract_config
from pipeline.features.pool import BatchReport, as_item, default_cache_dir, extract_batch

log = logging.getLogger(__name__)


def _skip_reason(p: Path) -> str:
    return f"not a media file ({p.suffix.lower() or 'no extension'}): skipped"


def list_media(folder: str | os.PathLike[str], skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Video and audio files under ``folder`` (:data:`~extractors.media.MEDIA_EXTENSIONS`;
    recursive, sorted; hidden files and folders ignored).

    With ``skipped``, every other (non-hidden) file found is appended to it as
    ``(path, reason)``, e.g. ``"not a media file (.txt): skipped"``. A broken link with a media
    extension is listed like a file (its extraction then fails naming it, "file not found"), not
    left out unseen.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: folder not found; check the path")
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or p.is_dir():
            continue
        if p.suffix.lower() in MEDIA_EXTENSIONS and (p.is_file() or p.is_symlink()):
            out.append(p)
        elif skipped is not None:
            skipped.append((p, _skip_reason(p) if p.is_file() else
                            "a broken link: skipped" if p.is_symlink() else "not a regular file: skipped"))
    return out


#: The older name of :func:`list_media` (it lists audio files too).
list_videos = list_media


def collect_inputs(inputs: Iterable[str | os.PathLike[str]], raw_dir: str | os.PathLike[str] | None = None, *,
                   corpora: bool = True, missing_ok: bool = True,
                   skipped: list[tuple[Path, str]] | None = None) -> list[Path | CorpusItem]:
    """The clips named by command-line inputs: video and audio files, folders (searched
    recursively) and, with ``corpora``, MMSA-FET corpora (a ``label.csv``, or a folder holding
    one; ``raw_dir`` as in :func:`read_mmsa_fet_corpus`).

    A folder without a video or audio file is an :class:`InputError`. With ``skipped``, every
    other (non-hidden) file inside a given folder is appended to it as ``(path, reason)``
    (hidden files and folders are ignored silently); a file named explicitly is always kept.
    A path that does not exist is kept (``missing_ok``: the batch reports it with the other
    failures) or refused. A file reached twice (a folder and a file in it, or the same file
    named twice) is kept once, where it first appears; corpus rows are kept as they are.
    """
    items: list[Path | CorpusItem] = []
    for raw in inputs:
        p = Path(raw)
        if corpora and p.suffix.lower() == ".csv":
            items += read_mmsa_fet_corpus(p, raw_dir)
        elif p.is_dir():
            if corpora and (p / "label.csv").is_file():
                items += read_mmsa_fet_corpus(p / "label.csv", raw_dir)
                continue
            others: list[tuple[Path, str]] = []
            found = list_media(p, others)
            if not found:
                tail = f"; {len(others)} other file(s) there are not media files" if others else ""
                raise InputError(f"{p}: no video files (.mp4 .mov .mkv .avi .mpg .webm ...) nor audio files "
                                 f"({' '.join(AUDIO_EXTENSIONS)}) in this folder (searched recursively){tail}")
            if skipped is not None:
                skipped += others
            items += found
        elif p.is_file() or missing_ok:
            items.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    seen: set[str] = set()
    unique: list[Path | CorpusItem] = []
    for it in items:
        if isinstance(it, Path):
            where = os.path.abspath(it)
            if where in seen:
                continue
            seen.add(where)
        unique.append(it)
    return unique


#: Runs the extraction of a corpus's clips: (items, config, cache) -> the batch's report.
BatchRunner = Callable[[Sequence[CorpusItem], ExtractConfig, FeatureCache], BatchReport]


def corpus_from_videos(
    label_csv: str | os.PathLike[str],
    raw_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    extract_config: str | os.PathLike[str] | ExtractConfig | None = None,
    workers: int = 1,
    progress: bool = True,
    overrides: Sequence[str] = (),
    run_batch: BatchRunner | None = None,
) -> Corpus:
    """Extract (or load from the cache) every clip of an MMSA-FET corpus; a labelled Corpus.

    ``run_batch`` does the extraction (default: :func:`~pipeline.features.pool.extract_batch` in this
    process or ``workers`` processes; the Prefect flows pass their build-features subflow).
    Clips that fail are left out with a warning naming the errors file; when none succeed,
    :class:`InputError` lists the first failures.
    """
    items = read_mmsa_fet_corpus(label_csv, raw_dir)
    cfg = extract_config if isinstance(extract_config, ExtractConfig) else \
        load_extract_config(extract_config, overrides=overrides)
    cache = FeatureCache(cache_dir or default_cache_dir())
    if run_batch is None:
        report = extract_batch(items, cfg, cache, workers=workers, progress=progress, load_entries=False)
    else:
        report = run_batch(items, cfg, cache)
    if report.failed:
        if len(report.failed) == len(items):
            first = "; ".join(m for _, m in report.failed[:3])
            raise InputError(f"{label_csv}: no clip could be extracted ({len(items)} failed, see "
                             f"{report.errors_path}): {first}")
        log.warning("%d of %d clips failed and are left out; see %s", len(report.failed), len(items),
                    report.errors_path)
    return corpus_from_batch(items, report, cache, source=label_csv)


def entries_to_corpus(
    entries: Iterable[CacheEntry],
    labels: dict[str, float] | None = None,
    splits: dict[str, str] | None = None,
    source: str = "feature cache",
) -> Corpus:
    """A :class:`~pipeline.corpora.clips.Corpus` of cached entries (text = transcript).

    ``labels`` and ``splits`` map a clip id (``entry.clip_id``, else the file name stem) to a
    label and a split; clips without one get ``None`` and ``"test"``. All entries must come
    from one extract configuration (same column names).
    """
    clips: list[Clip] = []
    first: CacheEntry | None = None
    for e in entries:
        if first is None:
            first = e
        check_same_columns(e, first)
        cid = e.clip_id or Path(e.source_path).stem
        clips.append(Clip(
            clip_id=cid, text=e.transcript,
            label=None if labels is None or cid not in labels else float(labels[cid]),
            split=(splits or {}).get(cid, "test"),
            audio=e.audio if e.audio_names else None,
            vision=e.vision if e.vision_names else None,
            meta={"face_share": e.face_share, "warnings": list(e.warnings), "path": e.source_path,
                  "key": e.key, "words": e.words, "duration": e.duration},
        ))
    return Corpus(clips=clips, audio_names=list(first.audio_names) if first else [],
                  vision_names=list(first.vision_names) if first else [], source=source,
                  feature_info=feature_info(first.meta if first else {}))


def corpus_from_batch(items: Sequence[Any], report: BatchReport, cache: FeatureCache,
                      source: str | os.PathLike[str] | None = None) -> Corpus:
    """A Corpus of a batch's succeeded clips, with labels and splits from the items when they have
    them. ``source`` names the corpus in messages and checkpoints (default: the cache folder).
    A clip whose cache entry is gone by now (removed since it was extracted) is left out with a
    warning; running the batch again extracts it."""
    labels: dict[str, float] = {}
    splits: dict[str, str] = {}
    entries: list[CacheEntry] = []
    gone: list[str] = []
    for x, key in zip(items, report.keys, strict=True):
        if key is None:
            continue
        it = as_item(x)
        e = cache.get(key)
        if e is None:
            gone.append(str(it.path))
            continue
        e.clip_id = it.clip_id
        entries.append(e)
        label = getattr(x, "label", None)
        if label is not None:
            labels[it.clip_id] = float(label)
        mode = getattr(x, "mode", None)
        if mode:
            splits[it.clip_id] = str(mode)
    if gone:
        log.warning("%d clip(s) left out: their cache entries in %s are gone since extraction (run again to "
                    "extract them): %s", len(gone), cache.root, ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else ""))
    return entries_to_corpus(entries, labels or None, splits or None,
                             source=str(source) if source is not None else str(cache.root))
