"""Word error rate with a small English normaliser (used by the ASR benchmark and tests).

Normalisation: lower case; hyphens and punctuation become spaces; letters glued to digits
are split ("K7" -> "k 7"); numbers up to 99 are spelled out ("7" -> "seven"); "mr." ->
"mister" and a few similar abbreviations. Enough for read English such as LibriVox and
GRID sentences; not a general text normaliser.
"""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ABBREV = {"mr.": "mister", "mrs.": "missus", "dr.": "doctor", "st.": "saint"}


def _number(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return " ".join(_ONES[int(d)] for d in str(n))


def normalize_words(text: str) -> list[str]:
    s = text.lower()
    for k, v in _ABBREV.items():
        s = s.replace(k, v)
    s = re.sub(r"([a-z])(\d)", r"\1 \2", s)
    s = re.sub(r"(\d)([a-z])", r"\1 \2", s)
    s = re.sub(r"\d+", lambda m: " " + _number(int(m.group())) + " ", s)
    s = re.sub(r"[^a-z' ]+", " ", s)
    return [w.strip("'") for w in s.split() if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        cur = [i] + [0] * len(hyp)
        for j in range(1, len(hyp) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
        prev = cur
    return prev[len(hyp)]


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: total word edits over total reference words (after normalisation)."""
    errors = total = 0
    for r, h in zip(refs, hyps, strict=True):
        rw, hw = normalize_words(r), normalize_words(h)
        errors += edit_distance(rw, hw)
        total += len(rw)
    return errors / max(total, 1)
