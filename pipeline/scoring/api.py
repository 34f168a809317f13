"""The Python front object: load a model, call it on media files, get results.

>>> from pipeline import Scorer
>>> scorer = Scorer.load()                      # the shipped default model; or a checkpoint / packed model
>>> result = scorer("talk.mp4")                 # one file, a list of files, or a folder
>>> result[0].score, result[0].utterances[0].transcript
>>> result.to_dataframe()                       # one row per file (pandas); .utterances_dataframe()
>>> result.save("runs/scores/talk")             # scores.csv, utterances.csv, JSONL, report: as `senbert score`

Nothing is written by a call but the feature cache (``cache_dir``, default ``$SENBERT_CACHE`` or
``~/.cache/senbert/features``); :meth:`Scores.save` writes the files `senbert score` writes.
`senbert score`, the Prefect ``score`` flow and the demo go through :class:`Scorer` too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import InputError
from pipeline.corpora.inputs import collect_inputs
from pipeline.features.cache import FeatureCache
from pipeline.features.config import ExtractConfig, load_extract_config
from pipeline.features.pool import default_cache_dir, extract_batch, resolve_workers
from pipeline.models.predictor import Predictor
from pipeline.scoring.score import (
    ClipFeatures,
    ScoreReport,
    earlier_rows,
    reads_vision,
    score_entries,
    write_outputs,
)
from pipeline.scoring.utterances import UtteranceSettings

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class UtteranceScore:
    """One utterance of a file: its span, transcript and scores (``None`` where not scored)."""

    index: int
    start: float
    end: float
    transcript: str
    score: float | None
    polarity: str | None
    class7_name: str | None
    score_language: float | None
    score_sense: float | None
    modalities: str | None  # what it was scored from: text, audio, vision joined by "+"
    face_share: float
    notes: list[str]
    status: str  # ok | failed
    error: str | None

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> UtteranceScore:
        return cls(index=int(r["index"]), start=float(r["start"]), end=float(r["end"]),
                   transcript=r.get("transcript") or "", score=r.get("score"), polarity=r.get("polarity"),
                   class7_name=r.get("class7_name"), score_language=r.get("score_language"),
                   score_sense=r.get("score_sense"), modalities=r.get("modalities"),
                   face_share=float(r.get("face_share") or 0.0), notes=list(r.get("notes") or []),
                   status=r["status"], error=r.get("error"))


@dataclass(frozen=True)
class FileScore:
    """One media file: its score (the duration-weighted mean of its utterances'), transcript,
    modalities, warnings and utterances; ``row`` is its full row of ``scores.csv``."""

    path: str
    status: str  # ok | failed | skipped
    score: float | None
    polarity: str | None
    class7_name: str | None
    transcript: str
    duration: float | None
    modalities: str | None
    face_share: float | None
    warnings: list[str]
    error: str | None
    utterances: list[UtteranceScore]
    row: dict[str, Any] = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Scores(Sequence[FileScore]):
    """The result of a :class:`Scorer` call: a :class:`FileScore` per input file, in input order."""

    files: list[FileScore]
    model: str
    modalities: str  # what the model reads
    report: ScoreReport = field(repr=False)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: Any) -> Any:
        return self.files[i]

    def __iter__(self) -> Iterator[FileScore]:
        return iter(self.files)

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(path, why) of every file that could not be scored."""
        return list(self.report.failed)

    def to_dataframe(self) -> Any:
        """One row per file (the columns of ``scores.csv``), as a pandas DataFrame."""
        import pandas as pd

        from pipeline.scoring.score import FIELDS

        return pd.DataFrame([{k: f.row.get(k) for k in FIELDS} for f in self.files], columns=FIELDS)

    def utterances_dataframe(self) -> Any:
        """One row per utterance (the columns of ``utterances.csv``), as a pandas DataFrame."""
        import pandas as pd

        from pipeline.scoring.score import UTTERANCE_FIELDS

        rows = [{k: u.get(k) for k in UTTERANCE_FIELDS} for u in self.report.utterances]
        return pd.DataFrame(rows, columns=UTTERANCE_FIELDS)

    def table(self, max_transcript: int = 40) -> str:
        """The summary table `senbert score` prints."""
        return self.report.table(max_transcript)

    def save(self, out_dir: PathLike, report: bool = True) -> ScoreReport:
        """Write ``scores.csv`` / ``.jsonl``, ``utterances.csv`` / ``.jsonl``, ``score-errors.json``
        and (``report``) the HTML report and PNG timelines into ``out_dir``, as `senbert score`
        does; the report of what was written (paths)."""
        return write_outputs(self.report, out_dir, report)


def _file_score(row: dict[str, Any], utts: list[dict[str, Any]]) -> FileScore:
    return FileScore(path=row["path"], status=row["status"], score=row.get("score"), polarity=row.get("polarity"),
                     class7_name=row.get("class7_name"), transcript=row.get("transcript") or "",
                     duration=row.get("duration"), modalities=row.get("modalities"),
                     face_share=row.get("face_share"), warnings=list(row.get("warnings") or []),
                     error=row.get("error"), utterances=[UtteranceScore.from_row(u) for u in utts], row=row)


class Scorer:
    """A loaded model with the settings of extraction and utterance cutting; call it on files.

    :meth:`load` takes the model by name or path; the constructor takes a loaded
    :class:`~pipeline.models.predictor.Predictor` (or ensemble).
    """

    def __init__(self, predictor: Any, extract_config: str | PathLike | ExtractConfig = "default",
                 overrides: Sequence[str] = (), cache_dir: PathLike | None = None,
                 utterances: UtteranceSettings | dict[str, float] | None = None, workers: int | str = 1) -> None:
        self.predictor = predictor
        self.config = extract_config if isinstance(extract_config, ExtractConfig) else \
            load_extract_config(extract_config, overrides=overrides)
        if hasattr(predictor, "check_extract"):  # a checkpoint that does not fit: refused before extracting
            predictor.check_extract(self.config)
        self.cache = FeatureCache(cache_dir or default_cache_dir())
        self.utterances = utterances if isinstance(utterances, UtteranceSettings) else \
            UtteranceSettings.from_dict(utterances)
        self.workers = workers

    @classmethod
    def load(cls, model: PathLike | None = None, device: str = "cpu", precision: str = "auto",
             **settings: Any) -> Scorer:
        """``model``: ``None`` / ``"default"`` (the shipped default model), a checkpoint or run
        folder, or a packed model's folder; ``precision``: ``auto`` (bf16 where the hardware has
        native bf16, else fp32), ``fp32`` or ``bf16`` (docs/scoring.md);
        ``settings``: those of the constructor (``extract_config``, ``overrides``, ``cache_dir``,
        ``utterances``, ``workers``)."""
        return cls(Predictor.load(model, device=device, precision=precision), **settings)

    @property
    def name(self) -> str:
        return str(self.predictor.name)

    @property
    def modalities(self) -> str:
        """What the model reads: ``text``, ``audio+vision`` or ``text+audio+vision``."""
        return str(self.predictor.modalities)

    def __repr__(self) -> str:
        return f"Scorer({self.name!r}, reads {self.modalities}, cache {self.cache.root})"

    def __call__(self, files: PathLike | Iterable[PathLike], progress: bool = False) -> Scores:
        """Score media files (video or audio; folders are searched recursively); nothing is
        written but the feature cache."""
        return self.score(files, progress=progress)

    def score(self, files: PathLike | Iterable[PathLike], out: PathLike | None = None, report: bool = True,
              progress: bool = False, skipped: Sequence[tuple[PathLike, str]] = ()) -> Scores:
        """Score media files; with ``out``, write there what `senbert score` writes (``report``:
        the HTML report too), reusing the rows of an earlier run there with the same features,
        model and utterance settings. ``skipped``: (path, reason) of inputs that are not media,
        listed as skipped rows."""
        t0 = time.perf_counter()
        named = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        found: list[tuple[Path, str]] = list((Path(p), r) for p, r in skipped)
        paths = [Path(p) for p in collect_inputs(named, corpora=False, missing_ok=True, skipped=found)]
        if not paths:
            raise InputError("no media files to score" + (f" ({len(found)} file(s) skipped: not media)"
                                                          if found else ""))
        # the failures go to this run's score-errors.json, not over `senbert extract`'s errors file; a
        # model that does not read vision needs the face landmarker only for the report's face share
        batch = extract_batch(paths, self.config, self.cache, workers=resolve_workers(self.workers, len(paths)),
                              progress=progress, load_entries=False, errors_file=False,
                              sparse_vision=not reads_vision(self.predictor))
        failed = dict(batch.failed)
        items = [ClipFeatures(str(p), key, None if key else failed.get(str(p), f"{p}: extraction failed"))
                 for p, key in zip(paths, batch.keys, strict=True)]
        items += [ClipFeatures(str(p), None, reason, skipped=True) for p, reason in found]
        rep = self.score_features(items, out, report, progress)
        rep.report.wall_seconds = time.perf_counter() - t0
        return rep

    def score_features(self, items: Sequence[ClipFeatures], out: PathLike | None = None, report: bool = True,
                       progress: bool = False) -> Scores:
        """Score files whose features are in the cache already (``items``: their paths and
        feature-cache keys, or why they have none); ``out`` and ``report`` as in :meth:`score`."""
        t0 = time.perf_counter()
        previous = earlier_rows(out) if out is not None else ({}, {})
        rep = score_entries(items, self.predictor, self.cache, progress, self.utterances, *previous,
                            keep_entries=out is None or report)
        if out is not None:
            write_outputs(rep, out, report)
        rep.wall_seconds = time.perf_counter() - t0
        files = [_file_score(r, u) for r, u in zip(rep.rows, rep.file_utterances, strict=True)]
        return Scores(files, self.name, self.modalities, rep)


__all__ = ["Scorer", "Scores", "FileScore", "UtteranceScore"]
