"""Batch scoring: media files -> one row per file in ``scores.csv`` / ``scores.jsonl`` and one
row per utterance in ``utterances.csv`` / ``utterances.jsonl``, plus an HTML report per file.

A file no longer than the utterance limit (15 s by default) is one utterance, scored whole. A
longer one is cut at its speech boundaries (:mod:`pipeline.scoring.utterances`: the recogniser's word
times and the pauses in the voice), each utterance is scored from its own transcript, face
frames and voice frames (slices of the file's cached sequences: extraction runs once per
file), and the file's row summarises them: the duration-weighted mean score, the most
negative and most positive utterances with their times, and the shares of speech time that
are positive, negative and neutral (7-class 0: a score within 0.5 of 0). When the model takes context,
an utterance's neighbours in the same file are its context.

Every row says which modalities were used: what the model reads, less what the file lacks (an
audio file has no face frames; a video without sound, or with a silent track, has no voice
and no speech). A language-only model gets a failed row when there is no speech to score. A
file that could not be scored gets ``status: failed`` and the reason in ``error`` (and is
listed in ``score-errors.json``); a file of a folder that is not media gets ``status:
skipped``. Limits a model has (``max_text_len`` tokens, ``max_seq_len`` steps) are written on
the utterance rows they cut, never applied silently.

Features come from the :class:`~pipeline.features.cache.FeatureCache` (extracted on the way when
missing). A file whose rows in an earlier run of the same output folder were made with the
same checkpoint (:attr:`Predictor.fingerprint`), the same features (the cache key: file
content + extractor config) and the same utterance settings is not scored again.

>>> from pipeline.scoring.score import score_videos
>>> report = score_videos(["a.mp4", "talk.mp3"], "default", "runs/scores")
>>> print(report.table())

``senbert score`` and the Prefect ``score`` flow both end here.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.io import atomic_write, atomic_write_json
from pipeline.features.cache import CacheEntry, FeatureCache, check_same_columns, feature_info
from pipeline.features.pool import failure_lines
from pipeline.models.metrics import polarity, seven_class
from pipeline.models.predictor import Predictor, UtteranceInput
from pipeline.scoring.utterances import Utterance, UtteranceSettings, entry_utterances, slice_entry

log = logging.getLogger(__name__)

CSV_NAME = "scores.csv"
JSONL_NAME = "scores.jsonl"
UTTERANCES_CSV = "utterances.csv"
UTTERANCES_JSONL = "utterances.jsonl"
ERRORS_NAME = "score-errors.json"
NO_PAGE = "no report page: "  # the warning of a file whose report page could not be made

#: Columns of ``scores.csv`` (and keys of every ``scores.jsonl`` line), in order: one row per file.
FIELDS = [
    "path", "clip_id", "status", "score", "polarity", "class7", "class7_name", "score_language",
    "score_sense", "score_raw", "transcript", "face_share", "warnings", "error", "feature_key", "checkpoint",
    "checkpoint_fingerprint", "model", "model_variant", "modalities", "scored_at",
    "duration", "n_utterances", "share_positive", "share_negative", "share_neutral",
    "most_negative_score", "most_negative_start", "most_negative_end", "most_negative_text",
    "most_positive_score", "most_positive_start", "most_positive_end", "most_positive_text",
    "segmentation", "report",
]

#: Columns of ``utterances.csv`` (and keys of ``utterances.jsonl``): one row per utterance.
UTTERANCE_FIELDS = [
    "path", "clip_id", "index", "start", "end", "duration", "status", "score", "polarity", "class7",
    "class7_name", "score_language", "score_sense", "score_raw", "transcript", "face_share", "modalities", "notes",
    "error", "feature_key", "model", "checkpoint_fingerprint", "segmentation", "scored_at",
]

@dataclass
class ClipFeatures:
    """One file to score: its path and either its feature-cache key or why it has none.

    ``skipped``: the file is not media (listed with the reason, not counted as failed).
    """

    path: str
    key: str | None = None
    error: str | None = None  # why it cannot be scored
    pred: dict[str, Any] | None = None  # the model's row, once scored
    clip_id: str = ""
    skipped: bool = False

    def __post_init__(self) -> None:
        self.path = str(self.path)
        if not self.clip_id:
            self.clip_id = Path(self.path).stem
        if self.key is None and self.error is None:
            self.error = f"{self.path}: no features"


@dataclass
class ScoreReport:
    """What a scoring run did, and where it wrote."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # one per input file, input order
    utterances: list[dict[str, Any]] = field(default_factory=list)  # one per utterance, file by file
    scored: int = 0  # files newly scored
    reused: int = 0  # files taken from an earlier run with the same checkpoint, features and settings
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not media
    out_dir: str = ""
    csv_path: str = ""
    jsonl_path: str = ""
    utterances_csv: str = ""
    utterances_jsonl: str = ""
    errors_path: str = ""
    report_index: str = ""  # the HTML index of the reports ("" when none were written)
    checkpoint: str = ""
    checkpoint_fingerprint: str = ""
    model_variant: str = ""
    model: str = ""  # the model's name (a packed model's, or the run folder's)
    modalities: str = ""  # what it reads: text, audio+vision or text+audio+vision
    segmentation: str = ""  # the utterance settings' signature
    wall_seconds: float = 0.0
    scored_at: str = ""
    #: the files' cache entries by their index in ``rows`` (the report's timelines; not written)
    entries: dict[int, CacheEntry] = field(default_factory=dict, repr=False)
    #: the utterance rows of each file, in the order of ``rows`` (``utterances`` is them flattened)
    file_utterances: list[list[dict[str, Any]]] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        n_utt = sum(1 for u in self.utterances if u.get("status") == "ok")
        noted = sum(1 for u in self.utterances if u.get("notes"))
        lines = [f"{self.scored} file(s) scored, {self.reused} reused from an earlier run, {len(self.failed)} failed, "
                 f"{len(self.skipped)} skipped ({self.wall_seconds:.1f} s); {n_utt} utterance(s); model {self.model} "
                 f"({self.modalities}; {self.model_variant}, {self.checkpoint_fingerprint}) from {self.checkpoint}",
                 f"wrote {self.csv_path}, {self.jsonl_path}, {self.utterances_csv} and {self.utterances_jsonl}"]
        if self.report_index:
            lines.append(f"report: {self.report_index}")
        if noted:
            lines.append(f"{noted} utterance(s) have notes (a limit of the model cut them, or how they were "
                         f"found): see the notes column of {self.utterances_csv}")
        if self.skipped:
            lines += failure_lines([(p, f"{p}: {m}") for p, m in self.skipped], "skipped (not media):")
        if self.failed:
            lines += failure_lines(self.failed, f"failures listed in {self.errors_path}:")
        return "\n".join(lines)

    def table(self, max_transcript: int = 40) -> str:
        return format_scores_table(self.rows, max_transcript)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored, "reused": self.reused,
            "failed": [{"path": p, "message": m} for p, m in self.failed],
            "skipped": [{"path": p, "reason": m} for p, m in self.skipped],
            "out_dir": self.out_dir, "csv": self.csv_path, "jsonl": self.jsonl_path,
            "utterances_csv": self.utterances_csv, "utterances_jsonl": self.utterances_jsonl,
            "errors": self.errors_path, "report": self.report_index,
            "checkpoint": self.checkpoint, "checkpoint_fingerprint": self.checkpoint_fingerprint,
            "model_variant": self.model_variant, "model": self.model, "modalities": self.modalities,
            "segmentation": self.segmentation, "wall_seconds": self.wall_seconds,
        }


def format_scores_table(rows: Sequence[dict[str, Any]], max_transcript: int = 40) -> str:
    """A plain-text table of score rows (for terminals and logs)."""
    head = ["clip", "score", "polarity", "7-class", "language", "sense", "face", "utt", "transcript / error"]
    body = []
    for r in rows:
        def num(v: Any, fmt: str = "{:+.2f}") -> str:
            return "" if v is None or v == "" else fmt.format(float(v))

        status = r.get("status")
        text = (r.get("transcript") or "") if status == "ok" else \
            f"{'SKIPPED' if status == 'skipped' else 'FAILED'}: {r.get('error') or ''}"
        if len(text) > max_transcript:
            text = text[: max_transcript - 1] + "…"
        body.append([str(r.get("clip_id", "")), num(r.get("score")), str(r.get("polarity") or ""),
                     str(r.get("class7_name") or ""), num(r.get("score_language")), num(r.get("score_sense")),
                     num(r.get("face_share"), "{:.0%}"), str(r.get("n_utterances") or ""), text])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)])


# --------------------------------------------------------------------------- files


def _csv_cell(key: str, v: Any) -> Any:
    if v is None:
        return ""
    if key in ("warnings", "notes"):
        return " | ".join(v)
    return v


def _write_table(rows: Sequence[dict[str, Any]], fields: list[str], csv_path: Path, jsonl_path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(k, r.get(k)) for k in fields})
    atomic_write(jsonl_path, "".join(json.dumps({k: r.get(k) for k in fields}, ensure_ascii=False) + "\n"
                                      for r in rows))
    atomic_write(csv_path, buf.getvalue())


def write_scores(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str],
                 utterances: Sequence[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``scores.jsonl`` (and, given, ``utterances.csv`` /
    ``utterances.jsonl``) into ``out_dir`` atomically; the paths of the first two."""
    out = Path(out_dir)
    if utterances is not None:
        _write_table(utterances, UTTERANCE_FIELDS, out / UTTERANCES_CSV, out / UTTERANCES_JSONL)
    csv_path, jsonl_path = out / CSV_NAME, out / JSONL_NAME
    _write_table(rows, FIELDS, csv_path, jsonl_path)
    return csv_path, jsonl_path


def read_scores(path: str | os.PathLike[str], name: str = JSONL_NAME) -> list[dict[str, Any]]:
    """Rows of a ``scores.jsonl`` (or of the file ``name`` in a folder: ``utterances.jsonl`` for
    the utterance rows); [] when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / name
    if not p.is_file():
        return []
    rows = []
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a damaged line only costs a re-score
            if isinstance(row, dict):
                rows.append(row)
    return rows


# --------------------------------------------------------------------------- rows


def _r(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)


def _failed_row(item: ClipFeatures, message: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update({"path": item.path, "clip_id": item.clip_id, "status": "skipped" if item.skipped else "failed",
                "warnings": [], "error": message, "feature_key": item.key})
    return row


def _tokenizer_of(predictor: Any) -> Any:
    tok = getattr(predictor, "tokenizer", None)
    if tok is None and getattr(predictor, "members", None):
        tok = predictor.members[0].tokenizer
    return tok


@dataclass
class _Piece:
    """One utterance of one file, on its way to a row."""

    item: int  # index of its file among the items
    utt: Utterance
    entry: CacheEntry  # the file's entry sliced to the utterance
    used: list[str]  # modalities it is scored from
    notes: list[str]
    error: str | None = None  # why it cannot be scored
    pred: dict[str, Any] | None = None  # the model's row, once scored


def _predict_pieces(todo: list[_Piece], predictor: Any, cache: FeatureCache, progress: bool) -> None:
    """Score ``todo`` in one batched pass (each piece gets its ``pred``); neighbours for context
    come from the same file only."""
    first = todo[0].entry
    for p in todo:
        check_same_columns(p.entry, first)
    utts = [UtteranceInput(file=str(p.item), index=p.utt.index,
                           text=p.entry.transcript if "text" in p.used else "",  # text masked: read as empty
                           audio=p.entry.audio if p.entry.audio_names else None,
                           vision=p.entry.vision if p.entry.vision_names else None) for p in todo]
    preds = predictor.predict_utterances(utts, first.audio_names, first.vision_names, feature_info(first.meta),
                                         source=f"{len(todo)} utterance(s) from {cache.root}", progress=progress)
    for p, pred in zip(todo, preds, strict=True):
        p.pred = pred


def _masked_reason(entry: CacheEntry, kind: str) -> str:
    masked = entry.meta.get("masked") or {}
    reason = masked.get(kind) if isinstance(masked, dict) else None
    return f" ({reason})" if reason else ""


def _plan(entry: CacheEntry, item: int, path: str, settings: UtteranceSettings, predictor: Any,
          tokenizer: Any) -> list[_Piece]:
    """The utterances of the file ``path`` (its cached ``entry``), each with the modalities it is
    scored from and its notes."""
    meta = predictor.meta
    cfg = meta.model_config
    utts = entry_utterances(entry, settings)
    # the whole file only when the one utterance spans it: a long file whose speech makes one
    # utterance (10 s of 20) is read from that utterance's frames, not from all the file's
    whole = (len(utts) == 1 and utts[0].text == entry.transcript and utts[0].start <= 1e-3
             and utts[0].end >= float(entry.duration) - 1e-3)
    pieces = []
    for u in utts:
        e = slice_entry(entry, u, whole, last=u.index == len(utts) - 1)
        notes = list(u.notes)
        used = []
        if cfg.uses_language and e.transcript.strip():
            used.append("text")
            if tokenizer is not None and meta.max_text_len:
                n = len(tokenizer(e.transcript)["input_ids"])
                if n > meta.max_text_len:
                    notes.append(f"transcript cut: {n} tokens, the model reads the first {meta.max_text_len}")
        if cfg.uses_sense:
            for kind, arr in (("audio", e.audio), ("vision", e.vision)):
                if len(arr):
                    used.append(kind)
                    if meta.max_seq_len and len(arr) > meta.max_seq_len:
                        what = "voice" if kind == "audio" else "face frames"
                        notes.append(f"{what} cut: {len(arr)} steps, the model reads the first {meta.max_seq_len}")
        p = _Piece(item, u, e, used, notes)
        if cfg.uses_language and not cfg.uses_sense and "text" not in used:
            why = _masked_reason(entry, "text") or _masked_reason(entry, "audio")
            p.error = (f"{path}: no speech to score{why} in {u.start:.1f}-{u.end:.1f} s; this model "
                       "reads the transcript only" if len(utts) > 1 else
                       f"{path}: no speech to score{why}; this model reads the transcript only")
        elif not used:
            p.error = (f"{path}: nothing this model reads in {u.start:.1f}-{u.end:.1f} s "
                       "(no speech, voice or face frames)")
        pieces.append(p)
    return pieces


def _utterance_row(item: ClipFeatures, p: _Piece, variant: str) -> dict[str, Any]:
    u, pred = p.utt, p.pred
    row: dict[str, Any] = {
        "path": item.path, "clip_id": item.clip_id, "index": u.index, "start": u.start, "end": u.end,
        "duration": round(u.duration, 3), "transcript": p.entry.transcript,
        "face_share": round(float(p.entry.face_share), 4), "notes": p.notes, "feature_key": item.key,
        "modalities": "+".join(p.used) if pred is not None else None,
    }
    if pred is None:
        row.update({"status": "failed", "error": p.error, "score": None, "polarity": None, "class7": None,
                    "class7_name": None, "score_language": None, "score_sense": None, "score_raw": None})
        return row
    lang, sense = pred.get("score_language"), pred.get("score_sense")
    # A unimodal checkpoint's only score *is* that modality's score.
    if variant == "language_only" and lang is None:
        lang = pred["score"]
    if variant == "sense_only" and sense is None:
        sense = pred["score"]
    row.update({"status": "ok", "error": None, "score": _r(pred["score"]), "polarity": pred["polarity"],
                "class7": int(pred["class7"]), "class7_name": pred["class7_name"],
                "score_language": _r(lang), "score_sense": _r(sense),
                "score_raw": _r(pred.get("score_raw", pred["score"]))})
    return row


def _weighted(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    pairs = [(float(r[key]), max(float(r["duration"]), 1e-3)) for r in rows if r.get(key) is not None]
    if not pairs:
        return None
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


def _file_row(item: ClipFeatures, entry: CacheEntry, utts: list[dict[str, Any]]) -> dict[str, Any]:
    """A file's row: the summary of its utterance rows."""
    ok = [u for u in utts if u["status"] == "ok"]
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update({"path": item.path, "clip_id": item.clip_id, "transcript": entry.transcript,
                "face_share": round(float(entry.face_share), 4), "warnings": list(entry.warnings),
                "feature_key": item.key, "duration": round(float(entry.duration), 3), "n_utterances": len(utts)})
    if not ok:
        errors = list(dict.fromkeys(u["error"] for u in utts if u.get("error")))
        row.update({"status": "failed", "error": "; ".join(errors[:3]) or f"{item.path}: nothing to score"})
        return row
    score = _weighted(ok, "score")
    assert score is not None
    cls, cls_name = seven_class(score)
    total = sum(max(float(u["duration"]), 1e-3) for u in ok)
    share = {"positive": 0.0, "negative": 0.0, "neutral": 0.0}
    for u in ok:
        kind = "neutral" if u["class7"] == 0 else "positive" if u["score"] > 0 else "negative"
        share[kind] += max(float(u["duration"]), 1e-3) / total
    lo = min(ok, key=lambda u: u["score"])
    hi = max(ok, key=lambda u: u["score"])
    used = [m for m in ("text", "audio", "vision") if any(m in (u["modalities"] or "").split("+") for u in ok)]
    row.update({
        "status": "ok", "error": None, "score": _r(score), "polarity": polarity(score), "class7": cls,
        "class7_name": cls_name, "score_language": _r(_weighted(ok, "score_language")),
        "score_sense": _r(_weighted(ok, "score_sense")), "score_raw": _r(_weighted(ok, "score_raw")),
        "modalities": "+".join(used),
        "share_positive": round(share["positive"], 4), "share_negative": round(share["negative"], 4),
        "share_neutral": round(share["neutral"], 4),
        **{f"most_{name}_{k}": u[src] for name, u in (("negative", lo), ("positive", hi))
           for k, src in (("score", "score"), ("start", "start"), ("end", "end"), ("text", "transcript"))},
    })
    failed = len(utts) - len(ok)
    if failed:
        row["warnings"].append(f"{failed} of {len(utts)} utterances could not be scored (see utterances.csv)")
    return row


# --------------------------------------------------------------------------- scoring


def _same(r: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What makes an earlier row reusable: the same features, checkpoint and utterance settings."""
    return r.get("feature_key"), r.get("checkpoint_fingerprint"), r.get("segmentation")


def earlier_rows(out_dir: str | os.PathLike[str]) -> tuple[dict[tuple[Any, ...], dict[str, Any]],
                                                          dict[tuple[Any, ...], list[dict[str, Any]]]]:
    """The scored file rows and the utterance rows an earlier run wrote in ``out_dir``, by what
    makes them reusable (:func:`score_entries`)."""
    previous = {_same(r): r for r in read_scores(out_dir) if r.get("status") == "ok" and r.get("feature_key")}
    previous_utts: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for u in read_scores(out_dir, UTTERANCES_JSONL):
        previous_utts.setdefault(_same(u), []).append(u)
    return previous, previous_utts


def score_features(items: Sequence[ClipFeatures], predictor: Any, cache: FeatureCache,
                   out_dir: str | os.PathLike[str], progress: bool = False,
                   utterances: UtteranceSettings | None = None, report: bool = True) -> ScoreReport:
    """Score files whose features are in ``cache``, utterance by utterance; write the files'
    and the utterances' CSV and JSONL, the errors file and (``report``) the HTML reports.

    ``predictor`` is a :class:`~pipeline.models.predictor.Predictor` (or an ensemble). Rows of an earlier
    run in ``out_dir`` with the same feature key, checkpoint fingerprint and utterance settings
    are reused.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot create the output folder ({e}); choose a writable --out") from e
    rep = score_entries(items, predictor, cache, progress, utterances, *earlier_rows(out), keep_entries=report)
    write_outputs(rep, out, report)
    rep.wall_seconds = time.perf_counter() - t0
    return rep


def score_entries(items: Sequence[ClipFeatures], predictor: Any, cache: FeatureCache, progress: bool = False,
                  utterances: UtteranceSettings | None = None,
                  previous: dict[tuple[Any, ...], dict[str, Any]] | None = None,
                  previous_utts: dict[tuple[Any, ...], list[dict[str, Any]]] | None = None,
                  keep_entries: bool = True) -> ScoreReport:
    """Score files whose features are in ``cache``, utterance by utterance; nothing is written
    (:func:`write_outputs` writes). ``previous`` / ``previous_utts``: earlier rows to reuse
    (:func:`earlier_rows`); ``keep_entries``: keep the features of reused files too (for a
    report's timelines)."""
    t0 = time.perf_counter()
    settings = utterances or UtteranceSettings()
    seg = settings.signature()
    previous, previous_utts = previous or {}, previous_utts or {}
    fp = predictor.fingerprint
    variant = predictor.meta.model_config.variant
    ckpt = str(predictor.path)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows: list[dict[str, Any] | None] = [None] * len(items)
    utt_rows: list[list[dict[str, Any]]] = [[] for _ in items]
    entries: dict[int, CacheEntry] = {}
    rep = ScoreReport(checkpoint=ckpt, checkpoint_fingerprint=fp, model_variant=variant,
                      model=predictor.name, modalities=predictor.modalities, segmentation=seg, scored_at=now)
    tokenizer = _tokenizer_of(predictor)

    pieces: list[_Piece] = []
    for i, it in enumerate(items):
        if it.key is None:
            rows[i] = _failed_row(it, it.error or f"{it.path}: no features")
            continue
        old = previous.get((it.key, fp, seg))
        kept = _whole_utterances(old, previous_utts.get((it.key, fp, seg)))
        if old is not None and kept is not None:
            # rows of an earlier version may lack newer columns (score_raw): they are None
            rows[i] = {**dict.fromkeys(FIELDS), **old, "path": it.path, "clip_id": it.clip_id}
            rows[i]["warnings"] = [w for w in old.get("warnings") or [] if not w.startswith(NO_PAGE)]
            utt_rows[i] = [{**dict.fromkeys(UTTERANCE_FIELDS), **u, "path": it.path, "clip_id": it.clip_id}
                           for u in kept]
            e = cache.get(it.key) if keep_entries else None  # only its report's timeline needs the features
            if e is not None:
                entries[i] = e
            rep.reused += 1
            continue
        e = cache.get(it.key)
        if e is None:
            rows[i] = _failed_row(it, f"{it.path}: its features ({it.key}) are not in the cache {cache.root}; "
                                      "extract it again")
            continue
        entries[i] = e
        pieces += _plan(e, i, it.path, settings, predictor, tokenizer)

    todo = [p for p in pieces if p.error is None]
    if todo:
        try:
            _predict_pieces(todo, predictor, cache, progress)
        except Exception as e:  # noqa: BLE001 - one file must not cost the others their scores
            log.warning("scoring all %d utterance(s) in one pass failed (%s: %s); scoring file by file",
                        len(todo), type(e).__name__, e)
            for i in dict.fromkeys(p.item for p in todo):
                own = [p for p in todo if p.item == i]
                try:
                    _predict_pieces(own, predictor, cache, False)
                except Exception as e2:  # noqa: BLE001 - listed as this file's failure
                    for p in own:
                        p.error = f"{items[i].path}: scoring failed ({type(e2).__name__}: {e2})"
    for p in pieces:
        utt_rows[p.item].append(_utterance_row(items[p.item], p, variant))
    for i in {p.item for p in pieces}:
        rows[i] = _file_row(items[i], entries[i], utt_rows[i])
        if rows[i]["status"] == "ok":
            rep.scored += 1

    final: list[dict[str, Any]] = []
    for i, r in enumerate(rows):
        assert r is not None
        r.update({"checkpoint": ckpt, "checkpoint_fingerprint": fp, "model": predictor.name, "model_variant": variant,
                  "segmentation": seg})
        if r["status"] != "ok":
            r["modalities"] = None
        r["scored_at"] = r.get("scored_at") or now
        for u in utt_rows[i]:
            u.update({"model": predictor.name, "checkpoint_fingerprint": fp, "segmentation": seg})
            u["scored_at"] = u.get("scored_at") or now
        final.append(r)

    rep.rows = final
    rep.utterances = [u for us in utt_rows for u in us]
    rep.failed = [(r["path"], r["error"]) for r in final if r["status"] == "failed"]
    rep.skipped = [(r["path"], r["error"]) for r in final if r["status"] == "skipped"]
    for r in final:
        r["report"] = None  # this run's pages only: a reused row's page of an earlier run may be gone
    rep.entries = entries
    rep.file_utterances = utt_rows
    rep.wall_seconds = time.perf_counter() - t0
    return rep


def write_outputs(rep: ScoreReport, out_dir: str | os.PathLike[str], report: bool = True) -> ScoreReport:
    """Write what :func:`score_entries` found into ``out_dir``: the files' and the utterances'
    CSV and JSONL, the errors file and (``report``) the HTML reports and PNG timelines; the paths
    are set on ``rep`` (and each file row's ``report``)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot create the output folder ({e}); choose a writable --out") from e
    final = rep.rows
    rep.out_dir = str(out)
    for r in final:
        r["report"] = None
    if report:
        try:
            rep.report_index = _write_reports(out, final, rep.file_utterances, rep.entries)
        except Exception as e:  # noqa: BLE001 - the scores must not be lost with the report
            log.warning("%s: the HTML report could not be written (%s: %s); the scores are written", out,
                        type(e).__name__, e)
            for r in final:
                r["report"] = None
    rep.utterances_csv, rep.utterances_jsonl = str(out / UTTERANCES_CSV), str(out / UTTERANCES_JSONL)
    csv_path, jsonl_path = write_scores(final, out, rep.utterances)
    rep.csv_path, rep.jsonl_path = str(csv_path), str(jsonl_path)
    rep.errors_path = str(out / ERRORS_NAME)
    atomic_write_json(out / ERRORS_NAME, {
        "created": rep.scored_at, "checkpoint": rep.checkpoint, "checkpoint_fingerprint": rep.checkpoint_fingerprint,
        "items": len(final),
        "failed": [{"path": p, "message": m} for p, m in rep.failed],
        "skipped": [{"path": p, "reason": m} for p, m in rep.skipped],
    })
    return rep


def _whole_utterances(row: dict[str, Any] | None, utts: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A file's earlier utterance rows, one per index ``0..n_utterances-1``, or None (score it
    again) when some are missing (a damaged line of utterances.jsonl). Files of the same content
    share a feature key and so their rows: each index is taken once, not once per such file."""
    if row is None or not utts:
        return None
    by_index: dict[Any, dict[str, Any]] = {}
    for u in utts:
        by_index.setdefault(u.get("index"), u)
    n = row.get("n_utterances")
    if not isinstance(n, int) or set(by_index) != set(range(n)):
        return None
    return [by_index[k] for k in range(n)]


def _write_reports(out: Path, rows: list[dict[str, Any]], utt_rows: list[list[dict[str, Any]]],
                   entries: dict[int, CacheEntry]) -> str:
    """The HTML reports and PNG timelines (:mod:`pipeline.scoring.report`); each row gets its report's
    path; the index's path."""
    from pipeline.scoring import report as html  # matplotlib: only when reports are written

    timelines = {rows[i]["path"]: html.timeline_from_entry(e) for i, e in entries.items()}
    by_path = {rows[i]["path"]: utt_rows[i] for i in range(len(rows))}
    files = html.write_reports(out, [_report_row(r) for r in rows], by_path, timelines)
    for r in rows:
        page = files.html.get(r["path"])
        r["report"] = str(page) if page else None
        if r["path"] in files.failed:
            r["warnings"].append(f"{NO_PAGE}{files.failed[r['path']]}")
    return str(files.index)


def _report_row(r: dict[str, Any]) -> dict[str, Any]:
    """A file row as the report reads it (the most negative / positive utterances as dicts)."""
    out = dict(r)
    for name in ("negative", "positive"):
        if r.get(f"most_{name}_score") is None:
            out[f"most_{name}"] = None
            continue
        out[f"most_{name}"] = {"score": r[f"most_{name}_score"], "start": r[f"most_{name}_start"],
                               "end": r[f"most_{name}_end"], "transcript": r[f"most_{name}_text"]}
    return out


def reads_vision(predictor: Any) -> bool:
    """Whether the model reads the visual features (else extraction may sample faces sparsely)."""
    return "vision" in str(getattr(predictor, "modalities", "text+audio+vision"))


def score_videos(
    videos: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str] | Any,
    out_dir: str | os.PathLike[str],
    extract_config: str | os.PathLike[str] | Any = "default",
    overrides: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
    progress: bool = True,
    device: str = "cpu",
    utterances: UtteranceSettings | None = None,
    skipped: Sequence[tuple[str | os.PathLike[str], str]] = (),
    report: bool = True,
    precision: str = "auto",
) -> ScoreReport:
    """Extract (or take from the cache) and score media files (video or audio), without Prefect,
    and write the results into ``out_dir``: :meth:`pipeline.scoring.api.Scorer.score` as a function.

    ``checkpoint`` is a checkpoint (or run) directory, a packed model or a loaded Predictor;
    ``extract_config`` a config name, YAML path or :class:`~pipeline.features.config.ExtractConfig`;
    ``device`` where the model runs (``cuda`` on a GPU machine; extraction stays on the CPU);
    ``precision`` what it computes in (``auto``: :meth:`Predictor.load`);
    ``utterances`` how long files are cut; ``skipped`` (path, reason) of files a folder held
    that are not media: they get ``skipped`` rows.
    """
    from pipeline.scoring.api import Scorer  # the front object builds on this module

    if not list(videos):  # refused before the model is loaded
        raise InputError("no media files to score" + (f" ({len(skipped)} file(s) skipped: not media)"
                                                      if skipped else ""))
    predictor = checkpoint if hasattr(checkpoint, "predict_corpus") else Predictor.load(checkpoint, device=device,
                                                                                         precision=precision)
    scorer = Scorer(predictor, extract_config, overrides, cache_dir, utterances, workers)
    return scorer.score(videos, out=out_dir, report=report, progress=progress, skipped=skipped).report


__all__ = ["ClipFeatures", "ScoreReport", "score_features", "score_videos", "reads_vision", "read_scores",
           "write_scores", "format_scores_table", "FIELDS", "UTTERANCE_FIELDS"]
