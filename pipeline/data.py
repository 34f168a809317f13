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
import torch

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


def encode_texts(tokenizer: Any, texts: Sequence[str], max_text_len: int,
                 contexts: Sequence[str] | None = None, max_context_len: int = 0) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_text_len`` (special tokens included). With
    ``contexts`` and ``max_context_len`` > 0, each text is the first segment of a pair whose
    second segment is its context truncated to ``max_context_len`` tokens: the utterance itself
    is never cut for its context's sake."""
    if not texts:
        return []
    if not contexts or max_context_len <= 0:
        return [list(x) for x in tokenizer(list(texts), truncation=True, max_length=max_text_len,
                                           padding=False)["input_ids"]]
    prefix, middle, suffix = _pair_template(tokenizer)
    n_special = len(prefix) + len(middle) + len(suffix)
    first = tokenizer(list(texts), add_special_tokens=False, truncation=True,
                      max_length=max(1, max_text_len - n_special))["input_ids"]
    second = tokenizer(list(contexts), add_special_tokens=False, truncation=True,
                       max_length=max_context_len)["input_ids"]
    alone = tokenizer(list(texts), truncation=True, max_length=max_text_len, padding=False)["input_ids"]
    return [prefix + list(a) + middle + list(b) + suffix if b else list(one)  # no context: as without the option
            for a, b, one in zip(first, second, alone)]


def _pair_template(tokenizer: Any) -> tuple[list[int], list[int], list[int]]:
    """The special tokens a tokenizer puts before, between and after the two texts of a pair
    (BERT: [CLS] a [SEP] b [SEP]; MPNet / RoBERTa: <s> a </s></s> b </s>), read off one encoding."""
    a = tokenizer("a", add_special_tokens=False)["input_ids"]
    b = tokenizer("b", add_special_tokens=False)["input_ids"]
    pair = list(tokenizer("a", "b")["input_ids"])
    i = next((k for k in range(len(pair)) if pair[k:k + len(a)] == a), None)
    j = next((k for k in range(len(pair) - len(b), -1, -1) if pair[k:k + len(b)] == b), None)
    if i is None or j is None or j < i + len(a):
        raise ConfigError(f"{type(tokenizer).__name__}: cannot read its text-pair template; set context: 0")
    return pair[:i], pair[i + len(a):j], pair[j + len(b):]


class ClipDataset(torch.utils.data.Dataset):
    """Tokenised, normalised clips ready for :func:`collate`.

    ``tokenizer`` is a Hugging Face tokenizer (or None for sense-only models); ``max_text_len``
    truncates the token sequence (MMSA uses 50). ``max_seq_len`` truncates audio and vision
    (keeps the first steps; 0 = no limit). ``max_context_len`` > 0 adds each clip's ``context``
    as a second text segment of at most that many tokens (:func:`encode_texts`).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        tokenizer: Any | None,
        max_text_len: int = 50,
        audio_norm: Normalizer | None = None,
        vision_norm: Normalizer | None = None,
        use_audio: bool = True,
        use_vision: bool = True,
        max_seq_len: int = 0,
        max_context_len: int = 0,
    ) -> None:
        self.clips = list(clips)
        self.items: list[dict[str, Any]] = []
        texts = [c.text or "" for c in self.clips]
        alone_list: list[list[int] | None] = [None] * len(texts)
        if tokenizer is not None and texts:
            contexts = [c.context for c in self.clips] if max_context_len > 0 else None
            ids_list = encode_texts(tokenizer, texts, max_text_len, contexts, max_context_len)
            if contexts and any(contexts):  # each clip read alone too, for set_context_dropout
                alone = encode_texts(tokenizer, texts, max_text_len)
                alone_list = [a if ctx else None for a, ctx in zip(alone, contexts)]
        else:
            ids_list = [[] for _ in texts]
        self.context_dropout = 0.0
        self._generator: torch.Generator | None = None
        for c, ids, alone_ids in zip(self.clips, ids_list, alone_list):
            item: dict[str, Any] = {"id": c.clip_id, "input_ids": list(ids)}
            if alone_ids is not None:
                item["input_ids_alone"] = list(alone_ids)
            item["label"] = float(c.label) if c.label is not None else float("nan")
            if use_audio:
                item["audio"] = self._prep(c.audio, audio_norm, max_seq_len, c.clip_id, "audio")
            if use_vision:
                item["vision"] = self._prep(c.vision, vision_norm, max_seq_len, c.clip_id, "vision")
            self.items.append(item)

    @staticmethod
    def _prep(arr: np.ndarray | None, norm: Normalizer | None, max_len: int, cid: str, kind: str) -> np.ndarray:
        if arr is None:
            raise InputError(f"clip {cid!r} has no {kind} features but the model needs them")
        a = norm.apply(arr) if norm is not None else clean_features(arr)
        if max_len and a.shape[0] > max_len:
            a = a[:max_len]
        return a

    def __len__(self) -> int:
        return len(self.items)

    def set_context_dropout(self, p: float, generator: torch.Generator) -> None:
        """Training only: from now on each clip that has a context is read alone (its context
        dropped) with probability ``p``, one draw from ``generator`` per such clip each time it is
        fetched; so a context model also learns clips that come without neighbours."""
        self.context_dropout, self._generator = float(p), generator

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        if self.context_dropout > 0.0 and "input_ids_alone" in item:
            if float(torch.rand(1, generator=self._generator)) < self.context_dropout:
                return {**item, "input_ids": item["input_ids_alone"]}
        return item


def _pad_seqs(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (T_i, d) arrays to (B, T_max, d) with zeros; mask is True on real steps.

    A clip with zero steps keeps one all-zero step marked as padding; the model treats a
    sequence with no real step as empty (its pooled token is zero).
    """
    t_max = max(1, max(s.shape[0] for s in seqs))
    d = seqs[0].shape[1]
    out = torch.zeros(len(seqs), t_max, d, dtype=torch.float32)
    mask = torch.zeros(len(seqs), t_max, dtype=torch.bool)
    for i, s in enumerate(seqs):
        n = s.shape[0]
        if n:
            out[i, :n] = torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32))
            mask[i, :n] = True
    return out, mask


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Shuffled batches of clips of similar text length: less padding, faster steps.

    Each epoch the clips are shuffled, cut into pools of ``pool`` batches, each pool is sorted by
    token count and cut into batches, and the batches are shuffled again, so every batch still
    mixes clips from the whole corpus in a new order each epoch. Deterministic for a given
    ``generator`` state (resumed runs continue the same sequence).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator, pool: int = 50) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.pool = max(1, pool) * batch_size

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool):
            chunk = sorted(order[start:start + self.pool], key=lambda i: self.lengths[i])
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        for j in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[j]


def collate(items: list[dict[str, Any]], pad_token_id: int = 0) -> dict[str, Any]:
    """Pad a list of dataset items into a batch with masks (True = real step)."""
    batch: dict[str, Any] = {"ids": [it["id"] for it in items]}
    batch["labels"] = torch.tensor([it["label"] for it in items], dtype=torch.float32)
    lens = [len(it["input_ids"]) for it in items]
    if max(lens, default=0) > 0:
        t = max(lens)
        ids = torch.full((len(items), t), pad_token_id, dtype=torch.long)
        am = torch.zeros(len(items), t, dtype=torch.long)
        for i, it in enumerate(items):
            n = len(it["input_ids"])
            ids[i, :n] = torch.tensor(it["input_ids"], dtype=torch.long)
            am[i, :n] = 1
        batch["input_ids"] = ids
        batch["attention_mask"] = am
    for kind in ("audio", "vision"):
        if kind in items[0]:
            batch[kind], batch[f"{kind}_mask"] = _pad_seqs([it[kind] for it in items])
    return batch
