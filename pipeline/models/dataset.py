"""The torch side of the data model: tokenising transcripts (with their context), the dataset of
normalised clips, length-grouped batches and the collate function (padding + masks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from common.errors import ConfigError, InputError
from pipeline.corpora.clips import Clip, Normalizer, clean_features


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
