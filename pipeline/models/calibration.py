"""Calibration of the final score: a monotone map fitted on the training split, after training.

Why. A regression head trained with an L1 loss predicts, for each input, the median of the
labels that such inputs get. MOSI's labels are means of annotators' ratings; clips whose text is
clearly positive get labels from about 1.8 to 3.0, and the median of those lies near 2.3. So the
head almost never predicts beyond +-2.5 (the shipped text model: no clip of MOSI train or valid
above 2.44), and the field's 7-class accuracy, which rounds the score, can never assign
classes -3 and +3, though 3.6 % of MOSI train and 8 % of MOSI valid are labelled so.

What. ``calibration: quantile`` (TrainConfig) fits, after training, a monotone piecewise-linear
map from the distribution of the model's own predictions on its training split to the
distribution of that split's labels, on each side of zero: the positive prediction at quantile q
(among the positive predictions) goes to the positive label at quantile q (among the positive
labels), the same for the negative ones, and 0 stays 0 (``KNOTS`` evenly spaced quantiles a side,
linear in between, flat beyond the ends). So the map changes how strong a score is, never its
sign: polarity (Acc-2) stays the model's own decision. ``quantile_global`` maps the whole
distribution at once instead, which may move clips near zero across it. Only the training split
is used, never valid or test; the order of the predictions is kept, so a higher raw score is
never a lower calibrated one. The map is stored with the model (a checkpoint's ``senbert.json``;
a packed ensemble's ``calibration.json``, fitted on the ensemble's mean) and applied to the final
score only; the unimodal heads stay as trained.

Where. :func:`fit_on_train` is the one fit of a model's map: a run's at the end of training
(``pipeline/training/trainer.py``) and a packed model's when it is released
(``pipeline/training/release/``) both call it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import InputError

if TYPE_CHECKING:
    from pipeline.corpora.clips import Corpus
    from pipeline.models.predictor import Ensemble, Predictor

#: the calibration kinds TrainConfig accepts
KINDS = ("none", "quantile", "quantile_global")
#: quantiles the map is fitted at (0 %, 1 %, ..., 100 %; per side for ``quantile``): smooth enough
#: for a training split of about a thousand clips, and a few kB to store
KNOTS = 101


@dataclass
class Calibration:
    """A monotone piecewise-linear map of the final score: ``x`` (raw) to ``y`` (calibrated)."""

    kind: str
    x: list[float]
    y: list[float]
    fitted_on: str = ""  # what it was fitted on (e.g. "mosi/label.csv train, 1284 clips")

    def __post_init__(self) -> None:
        if self.kind not in KINDS[1:]:
            raise ValueError(f"unknown calibration kind {self.kind!r} (known: {', '.join(KINDS[1:])})")
        if len(self.x) != len(self.y) or len(self.x) < 2:
            raise ValueError("x and y must be lists of the same length, at least 2")
        for name, v in (("x", self.x), ("y", self.y)):
            if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in v):
                raise ValueError(f"{name} must hold finite numbers")
            if any(b < a for a, b in zip(v, v[1:], strict=False)):
                raise ValueError(f"{name} must be non-decreasing (the map is monotone)")
        if not self.x[-1] > self.x[0]:
            raise ValueError("x must span an interval (all raw predictions were equal)")

    def __call__(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Calibration":
        """From stored JSON; an :class:`InputError` naming ``where`` when it is not a calibration."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: calibration must be an object with kind, x and y, not {type(data).__name__}")
        try:
            return cls(kind=data.get("kind"), x=list(data.get("x") or []), y=list(data.get("y") or []),
                       fitted_on=str(data.get("fitted_on", "")))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed calibration ({exc})") from None

    def describe(self) -> str:
        return f"{self.kind} ({self.fitted_on})" if self.fitted_on else self.kind


def _knots(p: np.ndarray, y: np.ndarray, knots: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.linspace(0.0, 1.0, knots)
    xs, ys = np.quantile(p, q), np.quantile(y, q)
    ux = np.unique(xs)  # sorted; equal raw quantiles merged (their labels' quantiles averaged)
    return ux, np.array([ys[xs == v].mean() for v in ux])


def fit_quantile(predictions: Sequence[float], labels: Sequence[float], fitted_on: str = "",
                 knots: int = KNOTS, kind: str = "quantile") -> Calibration:
    """The quantile map from ``predictions`` to ``labels`` (the same clips of a training split;
    only their distributions matter): on each side of zero for ``quantile`` (signs kept), over
    all of them for ``quantile_global``."""
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok], y[ok]
    where = fitted_on or "these clips"
    if len(p) < 2 or not p.max() > p.min():
        raise InputError(f"cannot fit a calibration on {where}: needs at least two labelled clips with different "
                         f"predictions (got {len(p)})")
    if kind == "quantile_global":
        xs, ys = _knots(p, y, knots)
    elif kind == "quantile":
        sides = [(p[p < 0], y[y < 0]), (p[p > 0], y[y > 0])]
        if any(len(sp) < 2 or len(sy) < 2 for sp, sy in sides):
            raise InputError(f"cannot fit a quantile calibration on {where}: it needs at least two negative and two "
                             "positive predictions and labels (use quantile_global or none)")
        (xn, yn), (xp, yp) = (_knots(sp, sy, knots) for sp, sy in sides)
        xs, ys = np.concatenate([xn, [0.0], xp]), np.concatenate([yn, [0.0], yp])
    else:
        raise ValueError(f"unknown calibration kind {kind!r}")
    return Calibration(kind, [float(v) for v in xs], [float(v) for v in ys], fitted_on)


def fit_on_train(model: Predictor | Ensemble, corpus: Corpus, kind: str = "quantile",
                 progress: bool = False) -> Calibration:
    """``model``'s calibration of its final score (``kind``: ``quantile`` or ``quantile_global``),
    fitted on the labelled clips of ``corpus``'s train split: the distribution of the model's raw
    (uncalibrated) final scores there mapped onto that of their labels. An ensemble's is fitted
    on the mean of its members. ``fitted_on`` names the corpus file by its last two path parts
    (``mosi/label.csv train, 1284 clips``). An :class:`InputError` when it cannot be fitted."""
    clips = [c for c in corpus.split("train") if c.label is not None]
    raw = model.predict_clips(clips, progress=progress, raw=True)
    source = Path(corpus.source)
    if source.is_file():
        source = source.resolve()
    return fit_quantile(raw["multimodal"], raw["labels"], kind=kind,
                        fitted_on=f"{'/'.join(source.parts[-2:])} train, {len(clips)} clips")


def calibrated(pred: dict[str, Any], calibration: Calibration | None) -> dict[str, Any]:
    """``pred`` (heads' predictions) with its final score mapped; the raw one kept as
    ``multimodal_raw``. Unchanged without a calibration."""
    if calibration is None or "multimodal" not in pred or not len(pred["multimodal"]):
        return pred
    out = dict(pred)
    out["multimodal_raw"] = list(pred["multimodal"])
    out["multimodal"] = calibration(pred["multimodal"]).tolist()
    return out
