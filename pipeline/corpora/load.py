"""Opening the corpus that ``--data`` (and ``--raw-dir``) name: the one place that decides how."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from common.errors import InputError
from pipeline.corpora.clips import Corpus
from pipeline.corpora.inputs import BatchRunner, corpus_from_videos
from pipeline.corpora.label_csv import read_label_csv
from pipeline.corpora.mmsa import read_mmsa_pkl
from pipeline.features.config import ExtractConfig


def load_corpus(
    path: str | os.PathLike[str],
    raw_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    extract_config: str | os.PathLike[str] | ExtractConfig | None = None,
    overrides: Sequence[str] = (),
    workers: int = 1,
    progress: bool = True,
    run_batch: BatchRunner | None = None,
) -> Corpus:
    """Open the corpus that ``--data`` (and ``--raw-dir``) name; the one place that decides how.

    - ``.pkl``: MMSA feature pickle (:func:`read_mmsa_pkl`);
    - ``.csv`` with ``raw_dir``: an MMSA-FET corpus with videos; their features are extracted or
      taken from the cache (:func:`corpus_from_videos`, with ``cache_dir``, ``extract_config``,
      ``overrides``, ``workers``, ``progress`` and ``run_batch``);
    - ``.csv``: a text-only corpus (:func:`read_label_csv`).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    kind = p.suffix.lower()
    if raw_dir and kind != ".csv":
        raise InputError(f"{p}: --raw-dir (videos) goes with an MMSA-FET label.csv, not with a {kind or 'folder'}")
    if kind in (".pkl", ".pickle"):
        return read_mmsa_pkl(p)
    if kind == ".csv":
        if raw_dir:
            return corpus_from_videos(p, raw_dir, cache_dir=cache_dir, extract_config=extract_config,
                                      workers=workers, progress=progress, overrides=overrides, run_batch=run_batch)
        return read_label_csv(p)
    raise InputError(f"{p}: unknown corpus type; expected an MMSA .pkl or a label.csv")
