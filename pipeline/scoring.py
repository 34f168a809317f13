"""Batch scoring: video files -> one row per clip in ``scores.csv`` and ``scores.jsonl``.

A row holds the clip's path, the multimodal score in [-3, 3], its polarity and 7-class label,
the language-only and sense-only scores, the transcript, the share of frames with a face and
the extraction warnings. A clip that could not be scored gets a row with ``status: failed``
and the reason in ``error`` (and is listed in ``score-errors.json``).

Features come from the :class:`~pipeline.cache.FeatureCache` (extracted on the way when
missing). A clip whose row in an earlier ``scores.jsonl`` of the same output folder was made
with the same checkpoint (:attr:`Predictor.fingerprint`) and the same features (the cache
key: file content + extractor config) is not scored again: its row is reused.

>>> from pipeline.scoring import score_videos
>>> report = score_videos(["a.mp4", "b.mp4"], "runs/demo/text_model/checkpoint", "runs/scores")
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
from pipeline.batch import default_cache_dir, extract_batch, failure_lines
from pipeline.cache import FeatureCache, entries_to_corpus
from pipeline.extract_config import ExtractConfig, load_extract_config
from pipeline.predict import Predictor

log = logging.getLogger(__name__)

CSV_NAME = "scores.csv"
JSONL_NAME = "scores.jsonl"
ERRORS_NAME = "score-errors.json"

#: Columns of ``scores.csv`` (and keys of every ``scores.jsonl`` line), in order.
FIELDS = [
    "path", "clip_id", "status", "score", "polarity", "class7", "class7_name", "score_language",
    "score_sense", "transcript", "face_share", "warnings", "error", "feature_key", "checkpoint",
    "checkpoint_fingerprint", "model", "model_variant", "modalities", "scored_at",
]


@dataclass
class ClipFeatures:
    """One clip to score: its path and either its feature-cache key or why it has none."""

    path: str
    key: str | None = None
    error: str | None = None
    clip_id: str = ""

    def __post_init__(self) -> None:
        self.path = str(self.path)
        if not self.clip_id:
            self.clip_id = Path(self.path).stem
        if self.key is None and self.error is None:
            self.error = f"{self.path}: no features"


@dataclass
class ScoreReport:
    """What a scoring run did, and where it wrote."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # one per input clip, input order
    scored: int = 0  # newly scored
    reused: int = 0  # taken from an earlier run with the same checkpoint and features
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    out_dir: str = ""
    csv_path: str = ""
    jsonl_path: str = ""
    errors_path: str = ""
    checkpoint: str = ""
    checkpoint_fingerprint: str = ""
    model_variant: str = ""
    model: str = ""  # the model's name (a packed model's, or the run folder's)
    modalities: str = ""  # what it reads: text, audio+vision or text+audio+vision
    wall_seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.scored} scored, {self.reused} reused from an earlier run, {len(self.failed)} failed "
                 f"({self.wall_seconds:.1f} s); model {self.model} ({self.modalities}; {self.model_variant}, "
                 f"{self.checkpoint_fingerprint}) from {self.checkpoint}",
                 f"wrote {self.csv_path} and {self.jsonl_path}"]
        if self.failed:
            lines += failure_lines(self.failed, f"failures listed in {self.errors_path}:")
        return "\n".join(lines)

    def table(self, max_transcript: int = 40) -> str:
        return format_scores_table(self.rows, max_transcript)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored, "reused": self.reused,
            "failed": [{"path": p, "message": m} for p, m in self.failed],
            "out_dir": self.out_dir, "csv": self.csv_path, "jsonl": self.jsonl_path, "errors": self.errors_path,
            "checkpoint": self.checkpoint, "checkpoint_fingerprint": self.checkpoint_fingerprint,
            "model_variant": self.model_variant, "model": self.model, "modalities": self.modalities,
            "wall_seconds": self.wall_seconds,
        }


def format_scores_table(rows: Sequence[dict[str, Any]], max_transcript: int = 40) -> str:
    """A plain-text table of score rows (for terminals and logs)."""
    head = ["clip", "score", "polarity", "7-class", "language", "sense", "face", "transcript / error"]
    body = []
    for r in rows:
        def num(v: Any, fmt: str = "{:+.2f}") -> str:
            return "" if v is None or v == "" else fmt.format(float(v))

        text = (r.get("transcript") or "") if r.get("status") == "ok" else f"FAILED: {r.get('error') or ''}"
        if len(text) > max_transcript:
            text = text[: max_transcript - 1] + "…"
        body.append([str(r.get("clip_id", "")), num(r.get("score")), str(r.get("polarity") or ""),
                     str(r.get("class7_name") or ""), num(r.get("score_language")), num(r.get("score_sense")),
                     num(r.get("face_share"), "{:.0%}"), text])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)])


# --------------------------------------------------------------------------- files


def _csv_cell(key: str, v: Any) -> Any:
    if v is None:
        return ""
    if key == "warnings":
        return " | ".join(v)
    return v


def write_scores(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``scores.jsonl`` into ``out_dir`` atomically; their paths."""
    out = Path(out_dir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(k, r.get(k)) for k in FIELDS})
    csv_path, jsonl_path = out / CSV_NAME, out / JSONL_NAME
    atomic_write(jsonl_path, "".join(json.dumps({k: r.get(k) for k in FIELDS}, ensure_ascii=False) + "\n"
                                      for r in rows))
    atomic_write(csv_path, buf.getvalue())
    return csv_path, jsonl_path


def read_scores(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``scores.jsonl`` (or of the ``scores.jsonl`` in a folder); [] when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / JSONL_NAME
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


# --------------------------------------------------------------------------- scoring


def _ok_row(item: ClipFeatures, pred: dict[str, Any], entry: Any, variant: str) -> dict[str, Any]:
    lang, sense = pred.get("score_language"), pred.get("score_sense")
    # A unimodal checkpoint's only score *is* that modality's score.
    if variant == "language_only" and lang is None:
        lang = pred["score"]
    if variant == "sense_only" and sense is None:
        sense = pred["score"]
    return {
        "path": item.path, "clip_id": item.clip_id, "status": "ok",
        "score": round(float(pred["score"]), 4), "polarity": pred["polarity"], "class7": int(pred["class7"]),
        "class7_name": pred["class7_name"],
        "score_language": None if lang is None else round(float(lang), 4),
        "score_sense": None if sense is None else round(float(sense), 4),
        "transcript": entry.transcript, "face_share": round(float(entry.face_share), 4),
        "warnings": list(entry.warnings), "error": None, "feature_key": entry.key,
    }


def _failed_row(item: ClipFeatures, message: str) -> dict[str, Any]:
    return {"path": item.path, "clip_id": item.clip_id, "status": "failed", "score": None, "polarity": None,
            "class7": None, "class7_name": None, "score_language": None, "score_sense": None,
            "transcript": None, "face_share": None, "warnings": [], "error": message, "feature_key": item.key}


def score_features(items: Sequence[ClipFeatures], predictor: Any, cache: FeatureCache,
                   out_dir: str | os.PathLike[str], progress: bool = False) -> ScoreReport:
    """Score clips whose features are in ``cache``; write the CSV, the JSONL and the errors file.

    ``predictor`` is a :class:`~pipeline.predict.Predictor`. Rows of an earlier run in
    ``out_dir`` with the same feature key and checkpoint fingerprint are reused.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot create the output folder ({e}); choose a writable --out") from e
    fp = predictor.fingerprint
    variant = predictor.meta.model_config.variant
    ckpt = str(predictor.path)
    previous = {(r.get("feature_key"), r.get("checkpoint_fingerprint")): r for r in read_scores(out)
                if r.get("status") == "ok" and r.get("feature_key")}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows: list[dict[str, Any] | None] = [None] * len(items)
    report = ScoreReport(checkpoint=ckpt, checkpoint_fingerprint=fp, model_variant=variant, out_dir=str(out),
                         model=predictor.name, modalities=predictor.modalities)

    todo: list[int] = []
    entries = []
    for i, it in enumerate(items):
        if it.key is None:
            rows[i] = _failed_row(it, it.error or f"{it.path}: no features")
            continue
        old = previous.get((it.key, fp))
        if old is not None:
            rows[i] = {**old, "path": it.path, "clip_id": it.clip_id}
            report.reused += 1
            continue
        e = cache.get(it.key)
        if e is None:
            rows[i] = _failed_row(it, f"{it.path}: its features ({it.key}) are not in the cache {cache.root}; "
                                      "extract it again")
            continue
        e.clip_id = str(len(entries))  # unique within this batch; the row keeps the real id
        entries.append(e)
        todo.append(i)

    if entries:
        corpus = entries_to_corpus(entries, source=f"{len(entries)} clip(s) from {cache.root}")
        preds = predictor.predict_corpus(corpus, progress=progress)
        for i, e, p in zip(todo, entries, preds, strict=True):
            rows[i] = _ok_row(items[i], p, e, variant)
            rows[i]["scored_at"] = now
            report.scored += 1
    final: list[dict[str, Any]] = []
    for r in rows:
        assert r is not None
        r.update({"checkpoint": ckpt, "checkpoint_fingerprint": fp, "model": predictor.name, "model_variant": variant,
                  "modalities": predictor.modalities if r["status"] == "ok" else None})
        r.setdefault("scored_at", now)
        final.append(r)
    report.rows = final
    report.failed = [(r["path"], r["error"]) for r in final if r["status"] != "ok"]
    csv_path, jsonl_path = write_scores(final, out)
    report.csv_path, report.jsonl_path = str(csv_path), str(jsonl_path)
    report.errors_path = str(out / ERRORS_NAME)
    atomic_write_json(out / ERRORS_NAME, {
        "created": now, "checkpoint": ckpt, "checkpoint_fingerprint": fp, "items": len(items),
        "failed": [{"path": p, "message": m} for p, m in report.failed],
    })
    report.wall_seconds = time.perf_counter() - t0
    return report


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
) -> ScoreReport:
    """Extract (or take from the cache) and score video files, without Prefect.

    ``checkpoint`` is a checkpoint (or run) directory or a loaded Predictor;
    ``extract_config`` a config name, YAML path or :class:`~pipeline.extract_config.ExtractConfig`;
    ``device`` where the model runs (``cuda`` on a GPU machine; extraction stays on the CPU).
    """
    paths = [Path(v) for v in videos]
    if not paths:
        raise InputError("no video files to score")
    predictor = checkpoint if hasattr(checkpoint, "predict_corpus") else Predictor.load(checkpoint, device=device)
    cfg = extract_config if isinstance(extract_config, ExtractConfig) else \
        load_extract_config(extract_config, overrides=overrides)
    cache = FeatureCache(cache_dir or default_cache_dir())
    t0 = time.perf_counter()
    batch = extract_batch(paths, cfg, cache, workers=workers, progress=progress, load_entries=False)
    failed = dict(batch.failed)
    items = [ClipFeatures(str(p), key, None if key else failed.get(str(p), f"{p}: extraction failed"))
             for p, key in zip(paths, batch.keys, strict=True)]
    report = score_features(items, predictor, cache, out_dir, progress=progress)
    report.wall_seconds = time.perf_counter() - t0
    return report


__all__ = ["ClipFeatures", "ScoreReport", "score_features", "score_videos", "read_scores", "write_scores",
           "format_scores_table", "FIELDS"]
