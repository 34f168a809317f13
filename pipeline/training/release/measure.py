"""What a released model's card states, measured: its calibration, fitted on MOSI train, and its
figures on the valid splits of MOSI and MOSEI and on MOSI valid with each clip read alone (the
test splits are not used). Benchmarks that only measure stay in ``bench/``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pipeline.corpora.clips import Clip, read_alone
from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import Calibration, calibrated, fit_on_train
from pipeline.models.checkpoint import read_meta
from pipeline.models.inference import ensemble_mean, metrics_of
from pipeline.models.metrics import summarize_seeds
from pipeline.models.packed import member_dirs
from pipeline.models.predictor import Predictor
from pipeline.training.release.card import ALONE

log = logging.getLogger(__name__)


def labelled(data: str, split: str) -> list[Clip]:
    """The labelled clips of ``split`` of the corpus ``data``."""
    return [c for c in load_corpus(data).split(split) if c.label is not None]


def measure(packed: Path, data: str, split: str = "valid", alone: bool = False) -> dict[str, Any]:
    """The packed model's figures on ``split`` of ``data`` (``ensemble``: calibrated as shipped;
    ``uncalibrated``: the plain mean of its members) and each member's own, uncalibrated (from
    the packed, fp16 files: what users get). ``alone``: every clip read without its neighbours
    (its own video), as ``senbert score`` reads a folder of short clips."""
    clips = labelled(data, split)
    if alone:
        clips = read_alone(clips)
    model = Predictor.load(packed)
    parts = getattr(model, "members", [model])
    t0 = time.perf_counter()
    preds = [p.predict_clips(clips, raw=True) for p in parts]
    mean = ensemble_mean(preds)
    shipped = calibrated(mean, model.calibration)
    seconds = time.perf_counter() - t0
    per = [metrics_of(p) for p in preds]
    out = {"n": len(clips), "ensemble": metrics_of(shipped), "members": summarize_seeds(per),
           "seconds": seconds, "clips_per_second": len(clips) / seconds if seconds else 0.0}
    if model.calibration is not None:
        out["uncalibrated"] = metrics_of(mean)
    return out


def card_figures(packed: Path, mosi: str, mosei: str) -> dict[str, dict[str, Any]]:
    """The figures a card states: MOSI valid, MOSEI valid and, for a model that reads utterance
    context, MOSI valid with each clip read alone (key :data:`ALONE`)."""
    figures = {"MOSI": measure(packed, mosi), "MOSEI": measure(packed, mosei)}
    if read_meta(member_dirs(packed)[0][0]).context > 0:
        figures[ALONE] = measure(packed, mosi, alone=True)
    return figures


def fit_calibration(packed: Path, mosi: str, kind: str = "quantile") -> Calibration:
    """The packed model's calibration, fitted on MOSI train: the distribution of the mean of its
    members' (uncalibrated) predictions mapped onto that of the labels (on each side of zero for
    ``quantile``); the same fit as a run's at the end of training (``fit_on_train``)."""
    t0 = time.perf_counter()
    cal = fit_on_train(Predictor.load(packed), load_corpus(mosi), kind=kind)
    log.info("calibration fitted on %s: %.0f s; raw %.2f..%.2f -> %.2f..%.2f", cal.fitted_on,
             time.perf_counter() - t0, cal.x[0], cal.x[-1], cal.y[0], cal.y[-1])
    return cal
