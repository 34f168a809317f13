"""Utterances: a long input is scored piece by piece, at its speech boundaries.

The models read utterances: CMU-MOSI's clips are single opinions of a few seconds (most under
15 s). A file no longer than :attr:`UtteranceSettings.max_s` is one utterance, scored whole,
as it always was. A longer file is cut between words (never inside one), from what the
feature cache keeps of it: the recogniser's words with their times, and the loudness of the
voice (the ``log_energy_db`` column of the acoustic features):

0. **Pauses.** Whisper's word times often run on through the silence after a word (or start
   early, in the silence before it). So each word's times are first trimmed to where it
   sounds: quiet stretches (at least 0.2 s whose loudness, smoothed over 0.1 s, stays
   ``silence_db`` below the file's speech level, its 95th loudness percentile) are cut out
   of it and its longest sounding part is kept. The pause between two words is then the gap
   between the trimmed times.
1. **Candidates.** Every pause of at least ``pause_s`` between two words is a boundary, and so
   is every sentence end the recogniser wrote (a word ending in ``.``, ``?`` or ``!``)
   followed by at least ``sentence_pause_s`` of pause.
2. **Short pieces are joined.** A piece whose speech lasts less than ``min_s`` joins the
   neighbour across the shorter pause, as long as the result stays within ``max_s``, unless it
   is a short complete utterance set apart: a pause of at least ``keep_pause_s`` on each side
   (the file's start and end count as such) and either a sentence end of its own or two words
   that are not hesitations (um, uh, ...). "It's okay." between two clear pauses stays its own
   utterance (its neighbours are still its context for a model that reads context).
3. **Long pieces are split.** A piece whose speech lasts more than ``max_s`` is cut at its
   longest pause (the one nearest its middle among equals), again and again, until every
   piece fits. Only one word longer than ``max_s`` could stay longer: its row says so.
4. **Times.** An utterance runs from up to ``pad_s`` before its speech to up to ``pad_s``
   after it, never past the middle of the pause to its neighbour, nor past the file's start
   or end. Its face frames and voice frames are the cached steps in that
   span; its transcript is its words.

A long file with no word times (silence, no speech found, or a transcript given without
times) is cut into equal windows of at most ``max_s`` when it has no words, or kept whole
when it has a given transcript (a note on the row says which).

Extraction runs once per file; :func:`slice_entry` only selects rows of the cached arrays.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from common.errors import ConfigError
from extractors.registry import FACE_PRESENT_COLUMN, LOUDNESS_DB_COLUMN
from pipeline.features.cache import CacheEntry

SENTENCE_END = (".", "?", "!")


#: The version of the cutting rules (2: pieces that splitting leaves short join a neighbour;
#: 3: a short complete utterance between clear pauses stays apart, ``keep_pause_s``).
SEGMENTATION_VERSION = 3

#: Hesitations: a short piece of only these (and one other word) is not a complete utterance.
HESITATIONS = frozenset({"um", "umm", "uh", "uhh", "uhm", "hmm", "hm", "mm", "mhm", "ah", "er", "erm", "eh"})


@dataclass(frozen=True)
class UtteranceSettings:
    """How long inputs are cut (``senbert score --max-utterance/--pause/...``, the score flow's
    ``utterances`` parameter)."""

    max_s: float = 15.0  # a file up to this long is one utterance; 0: never cut
    pause_s: float = 0.6  # a silence between words at least this long ends an utterance
    sentence_pause_s: float = 0.2  # ... or this long after a sentence end (. ? !)
    min_s: float = 1.0  # a shorter utterance joins its nearer neighbour (within max_s) ...
    keep_pause_s: float = 0.8  # ... unless complete and set apart by pauses this long (0: always joins)
    pad_s: float = 1.0  # silence kept around an utterance, at most half the pause to a neighbour
    silence_db: float = 15.0  # quiet: this far below the file's speech level (0: word times only)

    def __post_init__(self) -> None:
        for name in ("max_s", "pause_s", "sentence_pause_s", "min_s", "keep_pause_s", "pad_s", "silence_db"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"utterances.{name} must be a number >= 0, got {v!r}")
        if self.max_s and self.min_s > self.max_s:
            raise ConfigError(f"utterances.min_s ({self.min_s}) must not exceed max_s ({self.max_s})")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "UtteranceSettings":
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown utterance setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**{k: float(v) for k, v in d.items()})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"utterance settings {d}: every value must be a number ({e})") from None

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}

    def signature(self) -> str:
        """A short text naming these settings and the cutting rules' version (stored on rows, so
        changed settings or rules re-score)."""
        return (f"v{SEGMENTATION_VERSION}/" + "max{max_s:g}/pause{pause_s:g}/sent{sentence_pause_s:g}/min{min_s:g}"
                "/keep{keep_pause_s:g}/pad{pad_s:g}/db{silence_db:g}").format(**self.to_dict())


@dataclass
class Utterance:
    """One piece of a file: its index, its span in seconds and its words."""

    index: int
    start: float
    end: float
    words: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def _is_sentence_end(word: str) -> bool:
    return word.rstrip("\"')]»”’").endswith(SENTENCE_END)


def _trim(start: float, end: float, quiet: list[tuple[float, float]]) -> tuple[float, float]:
    """A word's times less the quiet stretches inside them: its longest sounding part (the word
    as given when nothing of it sounds)."""
    parts = [(start, end)]
    for qs, qe in quiet:
        if qe <= start or qs >= end:
            continue
        parts = [piece for a, b in parts for piece in ((a, min(b, qs)), (max(a, qe), b)) if piece[1] > piece[0]]
    return max(parts, key=lambda p: p[1] - p[0]) if parts else (start, end)


class _Speech:
    """Words (their times trimmed to where they sound) with the pause after each one."""

    def __init__(self, words: list[dict[str, Any]], quiet: list[tuple[float, float]]) -> None:
        self.words = words
        quiet = sorted(quiet)  # disjoint stretches: their starts and ends are both in order
        q_starts, q_ends = [a for a, _ in quiet], [b for _, b in quiet]
        times = []
        for w in words:
            s0, s1 = float(w["start"]), max(float(w["end"]), float(w["start"]))
            near = quiet[bisect.bisect_right(q_ends, s0):bisect.bisect_left(q_starts, s1)]  # the ones it overlaps
            times.append(_trim(s0, s1, near))
        self.starts = [a for a, _ in times]
        self.ends = [b for _, b in times]
        self.pauses = [(self.ends[i], max(self.ends[i], self.starts[i + 1])) for i in range(len(words) - 1)]

    def gap(self, i: int) -> float:
        """Length of the pause after word i."""
        ps, pe = self.pauses[i]
        return pe - ps

    def first(self, a: int) -> float:
        """When the speech of a piece starting at word a starts."""
        return self.starts[a]

    def last(self, b: int) -> float:
        """When the speech of a piece ending at word b ends."""
        return self.ends[b]

    def span(self, a: int, b: int) -> float:
        return self.last(b) - self.first(a)


def quiet_stretches(times: np.ndarray, energy_db: np.ndarray, silence_db: float,
                    min_s: float = 0.2) -> list[tuple[float, float]]:
    """Stretches of at least ``min_s`` whose loudness (smoothed over 5 steps) stays ``silence_db``
    below the speech level (the 95th percentile); quiet parts less than 0.1 s apart are one."""
    t = np.asarray(times, np.float64)
    e = np.asarray(energy_db, np.float64)
    if silence_db <= 0 or t.size < 5 or e.size != t.size:
        return []
    from scipy.ndimage import median_filter  # scipy comes with librosa; only needed here

    smooth = median_filter(e, size=5, mode="nearest")
    quiet = smooth < np.percentile(e, 95) - silence_db
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.02
    runs: list[list[float]] = []
    i = 0
    while i < t.size:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < t.size and quiet[j]:
            j += 1
        s0, s1 = float(t[i]), float(t[j - 1]) + step
        if runs and s0 - runs[-1][1] < 0.1:
            runs[-1][1] = s1
        else:
            runs.append([s0, s1])
        i = j
    return [(a, b) for a, b in runs if b - a >= min_s]


def _split_long(sp: _Speech, a: int, b: int, max_s: float) -> list[tuple[int, int]]:
    """Words a..b cut at their longest pauses until every piece's speech fits in ``max_s``."""
    if b <= a or sp.span(a, b) <= max_s:
        return [(a, b)]
    gaps = [(sp.gap(i), i) for i in range(a, b)]
    longest = max(g for g, _ in gaps)
    middle = (a + b) / 2
    cut = min((i for g, i in gaps if g >= longest - 1e-9), key=lambda i: abs(i + 0.5 - middle))
    return _split_long(sp, a, cut, max_s) + _split_long(sp, cut + 1, b, max_s)


def _bare(word: Any) -> str:
    return str(word).strip().strip(".,?!;:\"'()[]«»“”‘’…-").lower()


def _complete(words: list[dict[str, Any]]) -> bool:
    """A sentence end of its own, or two words that are not hesitations."""
    if not words:
        return False
    said = [w for w in words if _bare(w["word"]) and _bare(w["word"]) not in HESITATIONS]
    return len(said) >= 2 or (bool(said) and _is_sentence_end(str(words[-1]["word"]).strip()))


def _stands_apart(sp: _Speech, pieces: list[tuple[int, int]], k: int, s: UtteranceSettings) -> bool:
    """Piece k is a short complete utterance set apart by clear pauses: it keeps its own row."""
    if not s.keep_pause_s:
        return False
    a, b = pieces[k]
    before = k == 0 or sp.gap(a - 1) >= s.keep_pause_s
    after = k == len(pieces) - 1 or sp.gap(b) >= s.keep_pause_s
    return before and after and _complete(sp.words[a:b + 1])


def _join_short(sp: _Speech, pieces: list[tuple[int, int]], s: UtteranceSettings) -> list[tuple[int, int]]:
    pieces = list(pieces)
    changed = True
    while changed and len(pieces) > 1:
        changed = False
        for k, (a, b) in enumerate(pieces):
            if sp.span(a, b) >= s.min_s or _stands_apart(sp, pieces, k, s):
                continue
            options = []
            if k > 0:
                options.append((sp.gap(a - 1), k - 1, (pieces[k - 1][0], b)))
            if k + 1 < len(pieces):
                options.append((sp.gap(b), k, (a, pieces[k + 1][1])))
            options = [o for o in options if not s.max_s or sp.span(*o[2]) <= s.max_s]
            if not options:
                continue
            _, lo, merged = min(options, key=lambda o: o[0])
            pieces[lo:lo + 2] = [merged]
            changed = True
            break
    return pieces


def find_utterances(words: list[dict[str, Any]], duration: float, settings: UtteranceSettings,
                    transcript: str = "", quiet: list[tuple[float, float]] | None = None) -> list[Utterance]:
    """The utterances of a file of ``duration`` seconds whose recognised ``words`` (dicts with
    ``word``, ``start``, ``end``) are given; ``transcript`` is the whole file's text, ``quiet``
    its quiet stretches (:func:`quiet_stretches`; none: word times only)."""
    s = settings
    duration = max(0.0, float(duration))
    if not s.max_s or duration <= s.max_s:
        return [Utterance(0, 0.0, duration, list(words), transcript)]
    words = [w for w in words if str(w.get("word", "")).strip()]
    if not words:
        if transcript.strip():
            return [Utterance(0, 0.0, duration, [], transcript,
                              [f"the transcript has no word times: scored whole ({duration:.1f} s)"])]
        n = max(1, math.ceil(duration / s.max_s))
        step = duration / n
        return [Utterance(i, round(i * step, 3), round(duration if i == n - 1 else (i + 1) * step, 3), [], "",
                          [f"no speech: cut into {n} windows of {step:.1f} s"]) for i in range(n)]

    sp = _Speech(words, list(quiet or []))
    # 1. candidates: pauses, and sentence ends followed by a short pause
    pieces: list[tuple[int, int]] = []
    a = 0
    for i in range(len(words) - 1):
        gap = sp.gap(i)
        if gap >= s.pause_s or (_is_sentence_end(str(words[i]["word"])) and gap >= s.sentence_pause_s):
            pieces.append((a, i))
            a = i + 1
    pieces.append((a, len(words) - 1))
    # 2. short pieces join a neighbour; 3. long pieces are cut at their longest pauses
    pieces = _join_short(sp, pieces, s)
    pieces = [p for a, b in pieces for p in _split_long(sp, a, b, s.max_s)]
    pieces = _join_short(sp, pieces, s)  # a cut at the longest pause can leave a piece under min_s

    # 4. spans: padded, never past the middle of the pause to a neighbour
    out: list[Utterance] = []
    for k, (a, b) in enumerate(pieces):
        first, last = sp.first(a), sp.last(b)
        lo = 0.0 if k == 0 else sum(sp.pauses[a - 1]) / 2
        hi = duration if k == len(pieces) - 1 else sum(sp.pauses[b]) / 2
        # within the file even where the recogniser's word times run past its end
        start = min(max(lo, first - s.pad_s, 0.0), duration)
        end = min(hi, last + s.pad_s, duration)
        ws = words[a:b + 1]
        notes = []
        if last - first > s.max_s:
            notes.append(f"one word lasts {last - first:.1f} s, longer than the {s.max_s:g} s limit")
        out.append(Utterance(k, round(start, 3), round(max(end, start), 3), ws,
                             " ".join(str(w["word"]).strip() for w in ws), notes))
    return out


def entry_utterances(entry: CacheEntry, settings: UtteranceSettings) -> list[Utterance]:
    """The utterances of a cached file (its words, and its loudness where the acoustic features
    have a ``log_energy_db`` column)."""
    quiet: list[tuple[float, float]] = []
    if settings.max_s and entry.duration > settings.max_s and LOUDNESS_DB_COLUMN in entry.audio_names \
            and len(entry.audio):
        col = entry.audio_names.index(LOUDNESS_DB_COLUMN)
        quiet = quiet_stretches(entry.audio_times, entry.audio[:, col], settings.silence_db)
    return find_utterances(entry.words, entry.duration, settings, entry.transcript, quiet)


def _rows_in(times: np.ndarray, start: float, end: float, last: bool) -> slice:
    lo = int(np.searchsorted(times, start, side="left"))
    hi = int(np.searchsorted(times, end, side="right" if last else "left"))
    return slice(lo, hi)


def slice_entry(entry: CacheEntry, utt: Utterance, whole: bool, last: bool = False) -> CacheEntry:
    """The entry restricted to one utterance (a view of the cached arrays, nothing re-extracted).

    ``whole``: the utterance is the whole file (the entry itself, transcript included);
    ``last``: it ends at the file's end (its last step is kept).
    """
    if whole:
        return entry
    a = _rows_in(np.asarray(entry.audio_times), utt.start, utt.end, last)
    v = _rows_in(np.asarray(entry.vision_times), utt.start, utt.end, last)
    vision = entry.vision[v]
    face_share = entry.face_share
    if FACE_PRESENT_COLUMN in entry.vision_names:
        col = entry.vision_names.index(FACE_PRESENT_COLUMN)
        face_share = float(vision[:, col].mean()) if len(vision) else 0.0
    return replace(entry, audio=entry.audio[a], audio_times=entry.audio_times[a], vision=vision,
                   vision_times=entry.vision_times[v], transcript=utt.text, words=list(utt.words),
                   face_share=face_share, duration=utt.duration)


__all__ = ["UtteranceSettings", "Utterance", "find_utterances", "entry_utterances", "quiet_stretches",
           "slice_entry"]
