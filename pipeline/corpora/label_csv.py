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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import InputError
from extractors.media import MEDIA_EXTENSIONS, VIDEO_EXTENSIONS
from pipeline.corpora.clips import Clip, Corpus

log = logging.getLogger(__name__)

LABEL_CSV_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
MMSA_KEYS = ("raw_text", "audio", "vision", "regression_labels", "id")
_MODE_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}


def split_name(value: Any) -> str | None:
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
                mode = split_name(row.get("mode") or "")
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
