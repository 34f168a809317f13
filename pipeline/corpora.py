"""Corpus sources: every way a corpus is opened, and the one reader of each file format.

- MMSA-FET ``label.csv`` (video_id, clip_id, text, label, mode): :func:`read_label_rows` is the
  one reader, for a text-only corpus (:func:`read_label_csv`) and for the videos next to it
  (:func:`read_mmsa_fet_corpus`, ``Raw/<video_id>/<clip_id>.<ext>``);
- MMSA feature pickles: :func:`read_mmsa_pkl` and :func:`write_mmsa_pkl`;
- folders and files of videos and audio files: :func:`list_media` (also called
  :func:`list_videos`) and :func:`collect_inputs` (the inputs of ``senbert extract``,
  ``senbert score`` and the flows);
- :func:`load_corpus` opens what ``--data`` (and ``--raw-dir``) name, extracting and caching
  the features of videos on the way (:func:`corpus_from_videos`).

**Security note.** Reading a pickle runs code stored in the file. :func:`read_mmsa_pkl` only
opens the file the user names explicitly; never point it at a file you do not trust.
"""

from __future__ import annotations

import csv
import glob
import logging
import math
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError
from common.io import atomic_open
from extractors.media import AUDIO_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS
from pipeline.batch import BatchReport, corpus_from_batch, default_cache_dir, extract_batch
from pipeline.cache import FeatureCache
from pipeline.data import SPLITS, Clip, Corpus, clean_features
from pipeline.extract_config import ExtractConfig, load_extract_config

log = logging.getLogger(__name__)

LABEL_CSV_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
MMSA_KEYS = ("raw_text", "audio", "vision", "regression_labels", "id")
_MODE_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}


def _split_name(value: Any) -> str | None:
    """The split a label.csv mode or a pickle's key names (val and dev read as valid), or None."""
    return _MODE_ALIASES.get(value.strip().lower()) if isinstance(value, str) else None


LABEL_RANGE = (-3.0, 3.0)  # CMU-MOSI / CMU-MOSEI sentiment scale


def warn_labels_outside(source: Any, labels: Sequence[float | None]) -> None:
    """A warning when labels fall outside the [-3, 3] sentiment scale the metrics assume (Acc-7
    and Acc-5 clip to it; MAE and training use the values as given)."""
    lo, hi = LABEL_RANGE
    out = [x for x in labels if x is not None and math.isfinite(x) and not lo <= x <= hi]
    if out:
        log.warning("%s: %d label(s) outside [%g, %g] (e.g. %s); the metrics assume the CMU-MOSI/MOSEI scale: "
                    "Acc-7 and Acc-5 clip to it, MAE and training use the values as given",
                    source, len(out), lo, hi, ", ".join(f"{x:g}" for x in out[:3]))


def clip_key(video_id: str, clip_id: str) -> str:
    """MMSA's clip id: ``<video_id>$_$<clip_id>``."""
    return f"{video_id}$_${clip_id}"


# ----------------------------------------------------------------------------- label.csv
@dataclass(frozen=True)
class LabelRow:
    """One row of an MMSA-FET ``label.csv``, checked: the label is finite or None (empty), the
    mode is train/valid/test (``val`` and ``dev`` read as ``valid``). ``text`` is as written."""

    line: int
    video_id: str
    clip_id: str
    text: str
    label: float | None
    mode: str


def read_label_rows(path: str | os.PathLike[str]) -> list[LabelRow]:
    """The rows of an MMSA-FET ``label.csv`` (video_id, clip_id, text, label, mode).

    The one reader of label.csv files. A missing column, an empty id, a (video_id, clip_id) pair
    given twice, a label that is not a finite number or a mode other than train/valid/test (val,
    dev) is an :class:`InputError` naming the file and the line(s). A UTF-8 byte-order mark (as
    spreadsheet programs write "CSV UTF-8") is allowed.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file (expected an MMSA-FET label.csv)")
    rows: list[LabelRow] = []
    seen: dict[tuple[str, str], int] = {}  # (video_id, clip_id) -> its line
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in LABEL_CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    f"{p}: missing column(s) {missing}; a label.csv needs the header "
                    f"{','.join(LABEL_CSV_COLUMNS)} (found {reader.fieldnames})"
                )
            for row in reader:
                line_no = reader.line_num  # the physical line where this record ends (quoted text may span lines)
                label_raw = (row.get("label") or "").strip()
                label: float | None
                if label_raw == "":
                    label = None
                else:
                    try:
                        label = float(label_raw)
                    except ValueError:
                        raise InputError(f"{p}, line {line_no}: label {label_raw!r} is not a number") from None
                    if not math.isfinite(label):
                        raise InputError(f"{p}, line {line_no}: label {label_raw!r} is not finite")
                mode = _split_name(row.get("mode") or "")
                if mode is None:
                    raise InputError(
                        f"{p}, line {line_no}: mode {row.get('mode')!r} is not one of train/valid/test"
                    )
                vid, cid = (row.get("video_id") or "").strip(), (row.get("clip_id") or "").strip()
                if not vid or not cid:
                    raise InputError(f"{p}, line {line_no}: empty video_id or clip_id")
                if (vid, cid) in seen:
                    raise InputError(f"{p}, line {line_no}: clip {cid!r} of video {vid!r} is also on line "
                                     f"{seen[vid, cid]}; each clip once (which label would count?)")
                seen[vid, cid] = line_no
                rows.append(LabelRow(line_no, vid, cid, row.get("text") or "", label, mode))
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason}); is it really a label.csv?") from None
    except csv.Error as exc:
        raise InputError(f"{p}: malformed CSV ({exc})") from None
    if not rows:
        raise InputError(f"{p}: no rows")
    warn_labels_outside(p, [r.label for r in rows])
    return rows


def read_label_csv(path: str | os.PathLike[str]) -> Corpus:
    """A text-only corpus from an MMSA-FET ``label.csv`` (video_id, clip_id, text, label, mode).

    Rows with empty text are kept with an empty transcript (the encoder sees only [CLS] [SEP])
    and counted in a warning. Bad rows: see :func:`read_label_rows`.
    """
    p = Path(path)
    clips: list[Clip] = []
    empty = 0
    for r in read_label_rows(p):
        text = r.text.strip()
        if not text:
            empty += 1
        clips.append(Clip(clip_id=clip_key(r.video_id, r.clip_id), text=text, label=r.label, split=r.mode,
                          meta={"video_id": r.video_id, "clip": r.clip_id}))
    if empty:
        log.warning("%s: %d row(s) have empty text; they are kept with an empty transcript", p, empty)
    return Corpus(clips=clips, source=str(p))


@dataclass
class CorpusItem:
    """One row of an MMSA-FET ``label.csv`` with its media path (an item of a batch)."""

    video_id: str
    clip_id: str
    text: str
    label: float | None
    mode: str
    path: Path

    @property
    def uid(self) -> str:
        """MMSA's clip id: ``<video_id>$_$<clip_id>``."""
        return clip_key(self.video_id, self.clip_id)

    @property
    def transcript(self) -> str | None:
        return self.text if self.text and self.text.strip() else None


def read_mmsa_fet_corpus(label_csv: str | os.PathLike[str],
                         raw_dir: str | os.PathLike[str] | None = None) -> list[CorpusItem]:
    """Items of an MMSA-FET corpus: ``label.csv`` next to ``Raw/<video_id>/<clip_id>.<ext>``.

    The rows are read by :func:`read_label_rows` (the same checks and split names as a
    text-only corpus). ``raw_dir`` names the folder holding ``Raw/`` (or the ``Raw`` folder
    itself) when it is not next to the label file. A clip's file may be a video or an audio
    file (:data:`~extractors.media.MEDIA_EXTENSIONS`; a video first when both are there). A
    clip whose file is missing keeps the ``.mp4`` path; extracting it reports the missing file. Empty ``text`` means "no
    transcript": speech recognition runs for that clip.
    """
    path = Path(label_csv)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected an MMSA-FET label.csv)")
    base = Path(raw_dir) if raw_dir else path.parent
    raw = base / "Raw" if (base / "Raw").is_dir() or not raw_dir else base
    if raw_dir and not raw.is_dir():
        raise InputError(f"{raw_dir}: folder not found; give the folder that holds Raw/<video_id>/<clip_id>.<ext>")
    items: list[CorpusItem] = []
    for r in read_label_rows(path):
        for name, value in (("video_id", r.video_id), ("clip_id", r.clip_id)):
            if "/" in value or "\\" in value or value in (".", ".."):
                raise InputError(f"{path}, line {r.line}: {name} {value!r} is not a file name; the clip's file "
                                 f"is Raw/<video_id>/<clip_id>.<ext>, so neither may hold a path")
        folder = raw / r.video_id
        found = sorted((p for p in folder.glob(f"{glob.escape(r.clip_id)}.*")
                        if p.suffix.lower() in MEDIA_EXTENSIONS),
                       key=lambda p: (p.suffix.lower() not in VIDEO_EXTENSIONS, p.name)) \
            if folder.is_dir() else []
        items.append(CorpusItem(r.video_id, r.clip_id, r.text, r.label, r.mode,
                                found[0] if found else folder / f"{r.clip_id}.mp4"))
    return items


# ----------------------------------------------------------------------------- videos and audio files
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

    ``run_batch`` does the extraction (default: :func:`~pipeline.batch.extract_batch` in this
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


# ----------------------------------------------------------------------------- MMSA pickles
def _as_str(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return str(x)


def _as_text(x: Any) -> str:
    """A transcript of an MMSA split: None or NaN (a clip without one) is empty, not "None"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return _as_str(x)


_PAD_SIDES = ("end", "start")


def _padding_side(seq: np.ndarray, length: int) -> str | None:
    """Which end of ``seq`` (T, d) holds its ``T - length`` all-zero padding rows.

    ``"end"`` or ``"start"`` when only that end is all zero; ``None`` when there is no padding
    (or no real frame), or when both ends (or neither) are all zero and the clip cannot tell.
    """
    pad = seq.shape[0] - length
    if pad <= 0 or length <= 0:
        return None
    zero_end, zero_start = not np.any(seq[length:]), not np.any(seq[:pad])
    if zero_end != zero_start:
        return "end" if zero_end else "start"
    return None


def _real_rows(seq: np.ndarray, length: int, side: str) -> np.ndarray:
    """The ``length`` real frames of ``seq``: the first ones if padded at the end, else the last."""
    if length >= seq.shape[0]:
        return seq
    return seq[seq.shape[0] - length :] if side == "start" else seq[:length]


def _padding_report(p: Path, votes: dict[str, dict[str, int]], undecided: dict[str, int],
                    layout: dict[str, str]) -> tuple[int, str]:
    """One log line (level, message) naming the padding side found for each modality of a file."""
    parts, level = [], logging.INFO
    for name, side in layout.items():
        v = votes[name]
        if not v["end"] and not v["start"]:
            parts.append(f"{name} padded at the {side} (assumed: no clip tells)")
            continue
        parts.append(f"{name} padded at the {side} ({v['end']} clip(s) say end, {v['start']} start)")
        if v["end"] and v["start"]:
            level = logging.WARNING  # mixed layouts in one file: each such clip keeps its own side
    n_und = sum(undecided.values())
    tail = ""
    if n_und:
        tail = f"; {n_und} padded clip(s) that cannot tell (both ends or neither all zero) follow the file's side"
    return level, f"{p}: MMSA padding: {', '.join(parts)}{tail}"


def _mmsa_count(p: Path, split: str, values: Any, key: str, n: int | None) -> int:
    """The number of entries of a per-clip key of an MMSA split; InputError unless it is a
    sequence (of ``n`` entries when given)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or getattr(values, "ndim", 1) == 0:
        raise InputError(f"{p}: split {split!r}: {key} must hold one entry per clip, got a {type(values).__name__}")
    if n is not None and len(values) != n:
        raise InputError(f"{p}: split {split!r}: {key} has {len(values)} entries for {n} clips")
    return len(values)


def _mmsa_array(p: Path, split: str, part: dict[str, Any], key: str) -> np.ndarray:
    """A feature array of an MMSA split (numbers, one rectangular array)."""
    try:
        arr = np.asarray(part[key])
    except ValueError as exc:  # ragged: sequences of different lengths
        raise InputError(f"{p}: split {split!r}: {key} is not one (N, T, d) array ({exc})") from None
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{p}: split {split!r}: {key} holds {arr.dtype} values, not numbers")
    return arr


def _mmsa_numbers(p: Path, split: str, part: dict[str, Any], key: str, n: int,
                  lengths: bool = False) -> np.ndarray | None:
    """A per-clip numeric key of an MMSA split as float64 (N,), checked (None when a length key
    is absent: full length). Lengths must be finite and >= 0; labels may be NaN (unlabelled)."""
    if lengths and part.get(key) is None:
        return None
    _mmsa_count(p, split, part[key], key, n)
    try:
        out = np.asarray(part[key], dtype=np.float64).reshape(n)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{p}: split {split!r}: {key} must be numbers, one per clip ({exc})") from None
    if lengths and not (np.isfinite(out).all() and (out >= 0).all()):
        raise InputError(f"{p}: split {split!r}: {key} must be finite lengths >= 0")
    if np.isinf(out).any():
        raise InputError(f"{p}: split {split!r}: {key} holds an infinite value")
    return out


def read_mmsa_pkl(path: str | os.PathLike[str]) -> Corpus:
    """A corpus from an MMSA ``unaligned_50.pkl`` / ``aligned_50.pkl`` feature file.

    Layout: a dict with ``train``/``valid``/``test``, each a dict of arrays over N clips:
    ``raw_text`` (N,), ``audio`` (N, T_a, d_a), ``vision`` (N, T_v, d_v), ``audio_lengths`` and
    ``vision_lengths`` (N,; absent in aligned files: full length), ``regression_labels`` (N,;
    NaN: an unlabelled clip), ``id`` (N,). ``-inf``/NaN in the features become 0. Column names
    are not stored in MMSA files; they are named ``audio_000``... and ``vision_000``... A split
    whose keys do not fit this layout is an :class:`InputError` naming the file, split and key.

    Padding: most files pad each sequence at the end, but some widely used MOSI/MOSEI "noalign"
    pickles pad at the start. Each padded clip tells by which end holds its all-zero rows, and
    its real frames are taken from the other end; a clip that cannot tell (zero rows at both
    ends) follows the side most clips of its modality in the file show. One log line per file
    says which side was found.

    Reading a pickle runs code: call this only on a file you trust.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file (expected an MMSA feature pickle)")
    try:
        with open(p, "rb") as f:
            data = pickle.load(f)  # noqa: S301 - only for a file the user names, see docstring
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, IndexError) as exc:
        raise InputError(f"{p}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a dict with train/valid/test splits (MMSA layout), "
                         f"got a {type(data).__name__}")
    parts: dict[str, Any] = {}  # split -> its dict
    for key in data:
        split = _split_name(key)
        if split is None:
            continue
        if split in parts:
            raise InputError(f"{p}: two keys name the {split!r} split "
                             f"({[k for k in data if _split_name(k) == split]}); keep one")
        parts[split] = data[key]
    if not parts:
        raise InputError(f"{p}: expected a dict with train/valid/test splits (MMSA layout), found keys "
                         f"{[str(k) for k in list(data)[:8]]}")
    ignored = [str(k) for k in data if _split_name(k) is None]
    if ignored:
        log.warning("%s: key(s) %s are not train/valid/test splits and are ignored", p, ignored)
    absent = [s for s in SPLITS if s not in parts]
    if absent:
        log.warning("%s: no %s split in the file", p, "/".join(absent))
    clips: list[Clip] = []
    d_a = d_v = None
    # (clip, modality, padded sequence, real length, the clip's own padding side or None)
    pending: list[tuple[Clip, str, np.ndarray, int, str | None]] = []
    votes = {name: dict.fromkeys(_PAD_SIDES, 0) for name in ("audio", "vision")}
    undecided = dict.fromkeys(votes, 0)
    first_seen: dict[str, str] = {}  # clip id -> the split it was first read in
    for split in SPLITS:
        if split not in parts:
            continue
        part = parts[split]
        if not isinstance(part, dict):
            raise InputError(f"{p}: split {split!r} is a {type(part).__name__}, not a dict of arrays (MMSA layout)")
        missing = [k for k in MMSA_KEYS if k not in part]
        if missing:
            raise InputError(f"{p}: split {split!r} lacks key(s) {missing} of the MMSA layout")
        audio, vision = _mmsa_array(p, split, part, "audio"), _mmsa_array(p, split, part, "vision")
        n = _mmsa_count(p, split, part["id"], "id", None)
        if audio.ndim != 3 or vision.ndim != 3 or audio.shape[0] != n or vision.shape[0] != n:
            raise InputError(
                f"{p}: split {split!r}: audio {audio.shape} and vision {vision.shape} must be (N, T, d) with N={n}"
            )
        _mmsa_count(p, split, part["raw_text"], "raw_text", n)
        for name, arr in (("audio", audio), ("vision", vision)):
            dim = arr.shape[2]
            prev = d_a if name == "audio" else d_v
            if prev is not None and prev != dim:
                raise InputError(f"{p}: {name} has {dim} columns in {split!r} but {prev} in another split")
        d_a, d_v = audio.shape[2], vision.shape[2]
        a_len = _mmsa_numbers(p, split, part, "audio_lengths", n, lengths=True)
        v_len = _mmsa_numbers(p, split, part, "vision_lengths", n, lengths=True)
        labels = _mmsa_numbers(p, split, part, "regression_labels", n)
        for key, lens, t in (("audio_lengths", a_len, audio.shape[1]), ("vision_lengths", v_len, vision.shape[1])):
            if lens is None:
                continue
            if (lens != np.floor(lens)).any():
                i = int(np.flatnonzero(lens != np.floor(lens))[0])
                raise InputError(f"{p}: split {split!r}: {key} must be whole numbers of frames "
                                 f"(clip {_as_str(part['id'][i])!r} has {lens[i]:g})")
            if (lens > t).any():
                log.warning("%s: split %r: %d clip(s) have %s above the %d frames stored; their stored "
                            "frames are used", p, split, int((lens > t).sum()), key, t)
        if n == 0:
            log.warning("%s: split %r has no clips", p, split)
        unlabelled = int(np.isnan(labels).sum())
        if unlabelled:
            log.warning("%s: split %r: %d of %d clip(s) have no label (NaN): they are read unlabelled and "
                        "left out of that split's metrics (training refuses them in train/valid)",
                        p, split, unlabelled, n)
        warn_labels_outside(f"{p} ({split})", [float(x) for x in labels])
        for i in range(n):
            la = int(a_len[i]) if a_len is not None else audio.shape[1]
            lv = int(v_len[i]) if v_len is not None else vision.shape[1]
            la, lv = max(0, min(la, audio.shape[1])), max(0, min(lv, vision.shape[1]))
            raw_id = part["id"][i]
            if np.ndim(raw_id) != 0:
                raise InputError(f"{p}: split {split!r}: id of clip {i} is a {type(raw_id).__name__}, not one string")
            cid = _as_str(raw_id)
            if cid in first_seen:
                where = "twice in that split" if first_seen[cid] == split else f"also in split {first_seen[cid]!r}"
                raise InputError(f"{p}: split {split!r}: clip id {cid!r} is {where}; each clip once (a clip in "
                                 "two splits leaks between training and evaluation)")
            first_seen[cid] = split
            clip = Clip(
                clip_id=cid,
                text=_as_text(part["raw_text"][i]),
                # an unlabelled clip (NaN, as write_mmsa_pkl writes it) has no label, as in a label.csv
                label=float(labels[i]) if math.isfinite(labels[i]) else None,
                split=split,
            )
            for name, seq, length in (("audio", audio[i], la), ("vision", vision[i], lv)):
                side = _padding_side(seq, length)
                if side is not None:
                    votes[name][side] += 1
                elif 0 < length < seq.shape[0]:
                    undecided[name] += 1
                pending.append((clip, name, seq, length, side))
            clips.append(clip)
    if not clips:
        raise InputError(f"{p}: no clips")
    layout = {name: "start" if v["start"] > v["end"] else "end" for name, v in votes.items()}
    for clip, name, seq, length, side in pending:
        setattr(clip, name, clean_features(_real_rows(seq, length, side or layout[name])))
    log.log(*_padding_report(p, votes, undecided, layout))
    return Corpus(
        clips=clips,
        audio_names=[f"audio_{j:03d}" for j in range(d_a or 0)],
        vision_names=[f"vision_{j:03d}" for j in range(d_v or 0)],
        source=str(p),
    )


def write_mmsa_pkl(corpus: Corpus, path: str | os.PathLike[str], tokenizer: Any | None = None,
                   max_text_len: int = 50) -> Path:
    """Write ``corpus`` in MMSA's feature-pickle layout (padded arrays plus true lengths).

    ``text_bert`` (N, 3, L) holds input ids, attention mask and segment ids from ``tokenizer``
    (a bert-base-uncased-vocabulary tokenizer such as all-MiniLM-L6-v2's gives ids MMSA's BERT
    understands). Feature column names are added under ``audio_names`` / ``vision_names``
    (extra keys that MMSA ignores). The write is atomic.
    """
    if not corpus.has_audio or not corpus.has_vision:
        raise InputError(f"{corpus.source}: MMSA export needs audio and vision features for every clip")
    corpus.validate()
    out: dict[str, Any] = {}
    for split in SPLITS:
        clips = corpus.split(split)
        if not clips:
            continue
        n = len(clips)
        t_a = max(1, max(c.audio.shape[0] for c in clips))  # type: ignore[union-attr]
        t_v = max(1, max(c.vision.shape[0] for c in clips))  # type: ignore[union-attr]
        audio = np.zeros((n, t_a, len(corpus.audio_names)), np.float32)
        vision = np.zeros((n, t_v, len(corpus.vision_names)), np.float32)
        for i, c in enumerate(clips):
            audio[i, : c.audio.shape[0]] = c.audio  # type: ignore[union-attr]
            vision[i, : c.vision.shape[0]] = c.vision  # type: ignore[union-attr]
        part: dict[str, Any] = {
            "raw_text": np.array([c.text for c in clips], dtype=object),
            "audio": audio,
            "vision": vision,
            "audio_lengths": [int(c.audio.shape[0]) for c in clips],  # type: ignore[union-attr]
            "vision_lengths": [int(c.vision.shape[0]) for c in clips],  # type: ignore[union-attr]
            "regression_labels": np.array([np.nan if c.label is None else c.label for c in clips], np.float32),
            "id": np.array([c.clip_id for c in clips], dtype=object),
            "audio_names": list(corpus.audio_names),
            "vision_names": list(corpus.vision_names),
        }
        if tokenizer is not None:
            enc = tokenizer([c.text for c in clips], truncation=True, max_length=max_text_len,
                            padding="max_length", return_token_type_ids=True)
            part["text_bert"] = np.stack(
                [np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"]), np.asarray(enc["token_type_ids"])],
                axis=1,
            ).astype(np.float32)
        out[split] = part
    dest = Path(path)
    with atomic_open(dest, "wb") as f:
        pickle.dump(out, f, protocol=4)
    return dest


def load_corpus(
    path: str | os.PathLike[str],
    raw_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    extract_config: str | os.PathLike[str] | ExtractConfig | None = None,
    overrides: Sequence[str] = (),
    workers: int = 1,
    progress: bool = True,
    run_batch: BatchRunner | None = None,
) -> Corpus:
    """Open the corpus that ``--data`` (and ``--raw-dir``) name; the one place that decides how.

    - ``.pkl``: MMSA feature pickle (:func:`read_mmsa_pkl`);
    - ``.csv`` with ``raw_dir``: an MMSA-FET corpus with videos; their features are extracted or
      taken from the cache (:func:`corpus_from_videos`, with ``cache_dir``, ``extract_config``,
      ``overrides``, ``workers``, ``progress`` and ``run_batch``);
    - ``.csv``: a text-only corpus (:func:`read_label_csv`).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    kind = p.suffix.lower()
    if raw_dir and kind != ".csv":
        raise InputError(f"{p}: --raw-dir (videos) goes with an MMSA-FET label.csv, not with a {kind or 'folder'}")
    if kind in (".pkl", ".pickle"):
        return read_mmsa_pkl(p)
    if kind == ".csv":
        if raw_dir:
            return corpus_from_videos(p, raw_dir, cache_dir=cache_dir, extract_config=extract_config,
                                      workers=workers, progress=progress, overrides=overrides, run_batch=run_batch)
        return read_label_csv(p)
    raise InputError(f"{p}: unknown corpus type; expected an MMSA .pkl or a label.csv")
