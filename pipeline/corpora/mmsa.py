"""MMSA feature pickles (CMU-MOSI / CMU-MOSEI ``.pkl``): :func:`read_mmsa_pkl` and :func:`write_mmsa_pkl`.

**Security note.** Reading a pickle runs code stored in the file. :func:`read_mmsa_pkl` only
opens the file the user names explicitly; never point it at a file you do not trust.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError
from common.io import atomic_open
from pipeline.corpora.clips import SPLITS, Clip, Corpus, clean_features
from pipeline.corpora.label_csv import split_name, warn_labels_outside

log = logging.getLogger(__name__)

MMSA_KEYS = ("raw_text", "audio", "vision", "regression_labels", "id")


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
        split = split_name(key)
        if split is None:
            continue
        if split in parts:
            raise InputError(f"{p}: two keys name the {split!r} split "
                             f"({[k for k in data if split_name(k) == split]}); keep one")
        parts[split] = data[key]
    if not parts:
        raise InputError(f"{p}: expected a dict with train/valid/test splits (MMSA layout), found keys "
                         f"{[str(k) for k in list(data)[:8]]}")
    ignored = [str(k) for k in data if split_name(k) is None]
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
