"""Corpus sources: MMSA feature pickles (read and write) and MMSA-FET ``label.csv`` files.

**Security note.** Reading a pickle runs code stored in the file. :func:`read_mmsa_pkl` only
opens the file the user names explicitly; never point it at a file you do not trust.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError
from common.io import atomic_open
from pipeline.data import SPLITS, Clip, Corpus, clean_features

log = logging.getLogger(__name__)

LABEL_CSV_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
MMSA_KEYS = ("raw_text", "audio", "vision", "regression_labels", "id")
_MODE_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}


def clip_key(video_id: str, clip_id: str) -> str:
    """MMSA's clip id: ``<video_id>$_$<clip_id>``."""
    return f"{video_id}$_${clip_id}"


# ----------------------------------------------------------------------------- label.csv
def read_label_csv(path: str | os.PathLike[str]) -> Corpus:
    """A text-only corpus from an MMSA-FET ``label.csv`` (video_id, clip_id, text, label, mode).

    Rows with empty text are kept with an empty transcript (the encoder sees only [CLS] [SEP])
    and counted in a warning. A missing column, an unparsable label or an unknown mode is an
    :class:`InputError` naming the file and the row.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file (expected an MMSA-FET label.csv)")
    clips: list[Clip] = []
    empty = 0
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in LABEL_CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    f"{p}: missing column(s) {missing}; a label.csv needs the header "
                    f"{','.join(LABEL_CSV_COLUMNS)} (found {reader.fieldnames})"
                )
            for line_no, row in enumerate(reader, start=2):
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
                mode = _MODE_ALIASES.get((row.get("mode") or "").strip().lower())
                if mode is None:
                    raise InputError(
                        f"{p}, line {line_no}: mode {row.get('mode')!r} is not one of train/valid/test"
                    )
                text = (row.get("text") or "").strip()
                if not text:
                    empty += 1
                vid, cid = (row.get("video_id") or "").strip(), (row.get("clip_id") or "").strip()
                if not vid or not cid:
                    raise InputError(f"{p}, line {line_no}: empty video_id or clip_id")
                clips.append(
                    Clip(clip_id=clip_key(vid, cid), text=text, label=label, split=mode,
                         meta={"video_id": vid, "clip": cid})
                )
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason}); is it really a label.csv?") from None
    except csv.Error as exc:
        raise InputError(f"{p}: malformed CSV ({exc})") from None
    if not clips:
        raise InputError(f"{p}: no rows")
    if empty:
        log.warning("%s: %d row(s) have empty text; they are kept with an empty transcript", p, empty)
    return Corpus(clips=clips, source=str(p))


# ----------------------------------------------------------------------------- MMSA pickles
def _as_str(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return str(x)


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


def read_mmsa_pkl(path: str | os.PathLike[str]) -> Corpus:
    """A corpus from an MMSA ``unaligned_50.pkl`` / ``aligned_50.pkl`` feature file.

    Layout: a dict with ``train``/``valid``/``test``, each a dict of arrays over N clips:
    ``raw_text`` (N,), ``audio`` (N, T_a, d_a), ``vision`` (N, T_v, d_v), ``audio_lengths`` and
    ``vision_lengths`` (N,; absent in aligned files: full length), ``regression_labels`` (N,),
    ``id`` (N,). ``-inf``/NaN in the features become 0. Column names are not stored in MMSA
    files; they are named ``audio_000``... and ``vision_000``...

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
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise InputError(f"{p}: expected a dict with train/valid/test splits (MMSA layout)")
    clips: list[Clip] = []
    d_a = d_v = None
    # (clip, modality, padded sequence, real length, the clip's own padding side or None)
    pending: list[tuple[Clip, str, np.ndarray, int, str | None]] = []
    votes = {name: dict.fromkeys(_PAD_SIDES, 0) for name in ("audio", "vision")}
    undecided = dict.fromkeys(votes, 0)
    for split in SPLITS:
        if split not in data:
            continue
        part = data[split]
        missing = [k for k in MMSA_KEYS if k not in part]
        if missing:
            raise InputError(f"{p}: split {split!r} lacks key(s) {missing} of the MMSA layout")
        audio, vision = np.asarray(part["audio"]), np.asarray(part["vision"])
        n = len(part["id"])
        if audio.ndim != 3 or vision.ndim != 3 or audio.shape[0] != n or vision.shape[0] != n:
            raise InputError(
                f"{p}: split {split!r}: audio {audio.shape} and vision {vision.shape} must be (N, T, d) with N={n}"
            )
        for name, arr in (("audio", audio), ("vision", vision)):
            dim = arr.shape[2]
            prev = d_a if name == "audio" else d_v
            if prev is not None and prev != dim:
                raise InputError(f"{p}: {name} has {dim} columns in {split!r} but {prev} in another split")
        d_a, d_v = audio.shape[2], vision.shape[2]
        a_len = part.get("audio_lengths")
        v_len = part.get("vision_lengths")
        labels = np.asarray(part["regression_labels"], dtype=np.float64).reshape(n)
        for i in range(n):
            la = int(a_len[i]) if a_len is not None else audio.shape[1]
            lv = int(v_len[i]) if v_len is not None else vision.shape[1]
            la, lv = max(0, min(la, audio.shape[1])), max(0, min(lv, vision.shape[1]))
            clip = Clip(
                clip_id=_as_str(part["id"][i]),
                text=_as_str(part["raw_text"][i]),
                label=float(labels[i]),
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


def load_corpus(path: str | os.PathLike[str]) -> Corpus:
    """Open a corpus by file type: ``.pkl`` (MMSA features) or ``.csv`` (label.csv, text only)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.suffix.lower() in (".pkl", ".pickle"):
        return read_mmsa_pkl(p)
    if p.suffix.lower() == ".csv":
        return read_label_csv(p)
    raise InputError(f"{p}: unknown corpus type; expected an MMSA .pkl or a label.csv")
