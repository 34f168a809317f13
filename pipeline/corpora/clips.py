"""The data model: clips of unaligned sequences, corpora, normalisation, dataset and collate.

A :class:`Clip` holds one segment: its text, an acoustic sequence ``(T_a, d_a)``, a visual
sequence ``(T_v, d_v)``, a label in [-3, 3] (or ``None`` when unlabelled), its split and id.
A :class:`Corpus` is a list of clips plus the names of the acoustic and visual columns; every
source (MMSA pickles, ``label.csv`` files, the feature cache) produces one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from common.errors import ConfigError, InputError

SPLITS = ("train", "valid", "test")


@dataclass
class Clip:
    """One segment of a corpus, with unaligned sequences."""

    clip_id: str
    text: str = ""
    label: float | None = None
    split: str = "test"
    audio: np.ndarray | None = None  # (T_a, d_a) float32
    vision: np.ndarray | None = None  # (T_v, d_v) float32
    meta: dict[str, Any] = field(default_factory=dict)
    #: transcripts of the neighbouring clips of the same video (see :func:`with_context`); never labels
    context: str = ""


@dataclass
class Corpus:
    """Clips plus the column names of their acoustic and visual sequences."""

    clips: list[Clip]
    audio_names: list[str] = field(default_factory=list)
    vision_names: list[str] = field(default_factory=list)
    source: str = ""
    #: how the features were made (extract config name, fingerprint, frame rates), when known
    feature_info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_names)

    @property
    def has_vision(self) -> bool:
        return bool(self.vision_names)

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def split_sizes(self) -> dict[str, int]:
        return {s: sum(1 for c in self.clips if c.split == s) for s in SPLITS}

    def validate(self) -> None:
        """Check every clip's sequences against the column names; raise InputError if not."""
        for c in self.clips:
            for kind, arr, names in (("audio", c.audio, self.audio_names), ("vision", c.vision, self.vision_names)):
                if not names:
                    continue
                if arr is None:
                    raise InputError(f"{self.source}: clip {c.clip_id!r} has no {kind} sequence")
                if arr.ndim != 2 or arr.shape[1] != len(names):
                    raise InputError(
                        f"{self.source}: clip {c.clip_id!r} has {kind} of shape {tuple(arr.shape)}, "
                        f"expected (T, {len(names)})"
                    )


def clean_features(arr: np.ndarray) -> np.ndarray:
    """float32 copy with -inf/+inf/NaN replaced by 0 (MMSA's audio has -inf)."""
    out = np.asarray(arr, dtype=np.float32).copy()
    out[~np.isfinite(out)] = 0.0
    return out


@dataclass
class Normalizer:
    """Per-column z-score statistics of one modality, computed on the training split only."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, seqs: Iterable[np.ndarray], dim: int) -> "Normalizer":
        total = np.zeros(dim, dtype=np.float64)
        total_sq = np.zeros(dim, dtype=np.float64)
        count = 0
        for s in seqs:
            if s is None or len(s) == 0:
                continue
            s64 = clean_features(s).astype(np.float64)
            total += s64.sum(0)
            total_sq += (s64**2).sum(0)
            count += s64.shape[0]
        if count == 0:
            return cls(mean=[0.0] * dim, std=[1.0] * dim)
        mean = total / count
        var = np.maximum(total_sq / count - mean**2, 0.0)
        std = np.sqrt(var)
        std[std < 1e-6] = 1.0  # constant columns pass through centred
        return cls(mean=mean.tolist(), std=std.tolist())

    def apply(self, arr: np.ndarray) -> np.ndarray:
        a = clean_features(arr)
        if a.shape[-1] != len(self.mean):
            raise ConfigError(f"normaliser has {len(self.mean)} columns, data has {a.shape[-1]}")
        return ((a - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> "Normalizer":
        return cls(mean=list(d["mean"]), std=list(d["std"]))


CONTEXT_BEFORE, CONTEXT_AFTER = "before:", "after:"

#: How a model reads transcripts: ``as_given``, or ``plain``, the style of CMU-MOSI's transcripts
#: (lower case, no punctuation, apostrophes dropped: "didnt"), into which speech recognition's
#: cased, punctuated text ("They didn't.") is turned before tokenising.
TEXT_STYLES = ("as_given", "plain")
_APOSTROPHES = re.compile(r"['\u2019\u02bc\u2018`]")
_NOT_WORD = re.compile(r"[^\w\s]|_")


def styled(text: str, style: str) -> str:
    """``text`` in a model's transcript ``style`` (:data:`TEXT_STYLES`). ``plain`` leaves a MOSI
    transcript unchanged: its only characters are lower-case letters, digits and spaces."""
    if style == "as_given" or not text:
        return text
    if style != "plain":
        raise ConfigError(f"unknown text style {style!r}: one of {', '.join(TEXT_STYLES)}")
    t = _NOT_WORD.sub(" ", _APOSTROPHES.sub("", text.lower()))
    return " ".join(t.split())


def read_alone(clips: Sequence[Clip]) -> list[Clip]:
    """Copies of ``clips`` each as the only clip of a video of its own: a context model reads
    every one without neighbours (how it reads a folder of short clips)."""
    return [replace(c, context="", meta={**c.meta, "video_id": f"alone{i}", "clip": "0"}) for i, c in enumerate(clips)]


def in_corpus(clips: Sequence[Clip], tag: str) -> list[Clip]:
    """Copies of ``clips`` whose video ids are prefixed with ``tag``, so that :func:`with_context`
    never takes the clips of another corpus for neighbours when two corpora trained together use
    the same video id. Their order within a video is kept."""
    out = []
    for i, c in enumerate(clips):
        video, _ = _video_and_order(c, i)
        out.append(replace(c, meta={**c.meta, "video_id": f"{tag}{video}"}))
    return out


def _video_and_order(c: Clip, position: int) -> tuple[str, tuple[int, Any]]:
    """A clip's video and its place in it: MMSA ids are ``<video_id>$_$<clip_id>`` with numeric
    clip ids in MOSI and MOSEI (ordered as numbers); otherwise the order given."""
    video = str(c.meta.get("video_id") or c.clip_id.split("$_$")[0])
    clip = c.meta.get("clip")  # may be the number 0
    part = str(clip if clip not in (None, "") else (c.clip_id.split("$_$", 1)[1] if "$_$" in c.clip_id else ""))
    m = re.fullmatch(r"\d+", part)
    return video, ((0, int(part)) if m else (1, position))


def with_context(clips: Sequence[Clip], window: int) -> list[Clip]:
    """Copies of ``clips`` whose ``context`` holds the transcripts of up to ``window`` clips before
    and after each one in the same video and the same split (among the clips given: a split of a
    corpus, a whole corpus, or the utterances of one file), as training reads them: a clip gets the
    same neighbours whether its split is given alone or with the others. Only transcripts are
    used, never labels. ``window`` 0: no context."""
    if window <= 0:
        return [replace(c, context="") for c in clips]
    videos: dict[tuple[str, str], list[tuple[tuple[int, Any], int]]] = {}
    for i, c in enumerate(clips):
        video, order = _video_and_order(c, i)
        videos.setdefault((video, c.split), []).append((order, i))
    out = list(clips)
    for members in videos.values():
        idx = [i for _, i in sorted(members)]
        for k, i in enumerate(idx):
            before = " ".join(clips[j].text for j in idx[max(0, k - window):k] if clips[j].text)
            after = " ".join(clips[j].text for j in idx[k + 1:k + 1 + window] if clips[j].text)
            parts = ([f"{CONTEXT_BEFORE} {before}"] if before else []) + ([f"{CONTEXT_AFTER} {after}"] if after else [])
            out[i] = replace(clips[i], context=" ".join(parts))
    return out
