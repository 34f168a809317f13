"""The field's regression and classification metrics for sentiment in [-3, 3].

Definitions (as computed by MMSA / Self-MM / MulT evaluation code, written here from their
published definitions):

* ``mae``: mean absolute error; ``corr``: Pearson correlation of predictions and labels.
* ``acc7``: predictions and labels clipped to [-3, 3] and rounded to the nearest integer
  (7 classes), then accuracy. ``acc5``: the same after clipping to [-2, 2] (5 classes).
  Rounding is numpy's (half to even), as in the reference implementations.
* ``acc2_has0`` / ``f1_has0``: "negative / non-negative": class = (value >= 0), all clips.
* ``acc2_non0`` / ``f1_non0``: "negative / positive": clips whose label is exactly 0 are
  excluded, class = (value > 0).
* F1 is the support-weighted mean of the per-class F1 scores (scikit-learn's
  ``average='weighted'``).

So a prediction of exactly 0 counts as non-negative in ``*_has0`` and as negative in ``*_non0``
(the reference code's ``>= 0`` and ``> 0``), and with half-to-even rounding 0.5 falls in class 0,
1.5 and 2.5 in class 2. Clips without a finite label are left out by the callers. If any
prediction is not finite (a diverged model), every metric is NaN: no accuracy is computed from a
prediction that has no sign.

Accuracies and F1 are fractions in [0, 1]; reports multiply by 100.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

METRIC_NAMES = ("mae", "corr", "acc7", "acc5", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0")
#: For early stopping and model choice: True when larger is better.
HIGHER_IS_BETTER = {"mae": False, "corr": True, "acc7": True, "acc5": True, "acc2_has0": True,
                    "acc2_non0": True, "f1_has0": True, "f1_non0": True,
                    "language_mae": False, "sense_mae": False}
#: What ``select_metric`` may name: the final head's metrics, or a unimodal head's MAE (on valid).
SELECT_METRICS = tuple(HIGHER_IS_BETTER)


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Support-weighted F1 over the classes present in ``y_true`` or ``y_pred``."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    total = 0.0
    for c in np.unique(np.concatenate([y_true, y_pred])):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        f1 = 0.0 if denom == 0 else 2 * tp / denom
        total += f1 * np.sum(y_true == c)
    return float(total / y_true.size)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # undefined for constant inputs: all values equal (a float std of equal values need not be 0)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def regression_metrics(preds: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` for predictions and labels in [-3, 3]."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} predictions for {y.size} labels")
    if not np.isfinite(y).all():  # an unlabelled clip (NaN) belongs out of the metrics, not in them
        raise ValueError(f"{int((~np.isfinite(y)).sum())} of {y.size} labels are not finite; "
                         "leave unlabelled clips out before computing metrics")
    if p.size == 0 or not np.isfinite(p).all():
        return {k: float("nan") for k in METRIC_NAMES}
    out: dict[str, float] = {}
    out["mae"] = float(np.mean(np.abs(p - y)))
    out["corr"] = pearson(p, y)
    out["acc7"] = float(np.mean(np.round(np.clip(p, -3, 3)) == np.round(np.clip(y, -3, 3))))
    out["acc5"] = float(np.mean(np.round(np.clip(p, -2, 2)) == np.round(np.clip(y, -2, 2))))
    has0_p, has0_y = p >= 0, y >= 0
    out["acc2_has0"] = float(np.mean(has0_p == has0_y))
    out["f1_has0"] = weighted_f1(has0_y, has0_p)
    nz = y != 0
    if nz.any():
        non0_p, non0_y = p[nz] > 0, y[nz] > 0
        out["acc2_non0"] = float(np.mean(non0_p == non0_y))
        out["f1_non0"] = weighted_f1(non0_y, non0_p)
    else:
        out["acc2_non0"] = out["f1_non0"] = float("nan")
    return out


def summarize_seeds(runs: Iterable[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0 for one run) of each metric over seeds."""
    runs = list(runs)
    keys = [k for k in runs[0] if all(k in r for r in runs)] if runs else []
    out = {}
    for k in keys:
        vals = np.asarray([r[k] for r in runs], dtype=np.float64)
        std = float(np.std(vals, ddof=1)) if vals.size > 1 else 0.0
        out[k] = {"mean": float(np.mean(vals)), "std": std, "n": int(vals.size)}
    return out


def metric_cell(name: str, value: Any) -> str:
    """One metric as the tables of this project show it: MAE and Corr with 3 decimals, accuracies
    and F1 in % with 2; a seed summary (``{"mean", "std"}``) as ``mean ± std``, or the mean alone
    when it is of one run (no spread was measured); NaN as ``nan``."""
    if isinstance(value, dict):
        if math.isnan(value["mean"]):
            return "nan"
        if value.get("n") == 1:
            return metric_cell(name, value["mean"])
        return f"{metric_cell(name, value['mean'])} ± {metric_cell(name, value['std'])}"
    if math.isnan(value):
        return "nan"
    return f"{value:.3f}" if name in ("mae", "corr") else f"{100 * value:.2f}"


def metric_cells(m: dict[str, Any], metrics: Sequence[str] = METRIC_NAMES) -> str:
    """The cells of one Markdown table row (``-`` for a metric ``m`` lacks), joined by `` | ``."""
    return " | ".join(metric_cell(k, m[k]) if k in m else "-" for k in metrics)


def format_table(rows: dict[str, dict[str, dict[str, float]]], metrics: Sequence[str] = METRIC_NAMES) -> str:
    """A Markdown table: one row per configuration, ``mean ± std`` per metric (accuracies in %)."""
    lines = ["| config | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    lines += [f"| {name} | {metric_cells(summ, metrics)} |" for name, summ in rows.items()]
    return "\n".join(lines)


def polarity(score: float) -> str:
    """'positive' (> 0), 'negative' (< 0) or 'neutral' (exactly 0): the sign, not the Acc-7 class
    (:func:`seven_class` names |score| <= 0.5 "neutral")."""
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


SEVEN_CLASS_NAMES = {-3: "highly negative", -2: "negative", -1: "weakly negative", 0: "neutral",
                     1: "weakly positive", 2: "positive", 3: "highly positive"}


def seven_class(score: float) -> tuple[int, str]:
    """The Acc-7 class of a score: clipped to [-3, 3] and rounded, with its name."""
    c = int(np.round(np.clip(score, -3, 3)))
    return c, SEVEN_CLASS_NAMES[c]
