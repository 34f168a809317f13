"""Eq. (8) against a hand computation, and every metric against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.loss import UncertaintyWeightedLoss
from pipeline.models.metrics import (
    format_table,
    metric_cell,
    metric_cells,
    regression_metrics,
    seven_class,
    summarize_seeds,
    weighted_f1,
)


def test_eq8_matches_hand_computation():
    loss_fn = UncertaintyWeightedLoss(["multimodal", "language", "sense"])
    sig2 = [0.5, 2.0, 4.0]  # sigma^2 per task
    with torch.no_grad():
        loss_fn.log_var.copy_(torch.log(torch.tensor(sig2)))
    labels = torch.tensor([1.0, -2.0])
    outputs = {"multimodal": torch.tensor([0.5, -1.0]),  # L1 = (0.5 + 1.0) / 2 = 0.75
               "language": torch.tensor([1.0, 0.0]),  # L1 = (0 + 2) / 2 = 1.0
               "sense": torch.tensor([3.0, -2.0])}  # L1 = (2 + 0) / 2 = 1.0
    total, parts = loss_fn(outputs, labels)
    l_mul, l_lan, l_sen = 0.75, 1.0, 1.0
    hand = (l_mul / (2 * 0.5) + l_lan / (2 * 2.0) + l_sen / (2 * 4.0)
            + math.log(1 + 0.5) + math.log(1 + 2.0) + math.log(1 + 4.0))
    assert total.item() == pytest.approx(hand, rel=1e-6)
    assert parts["multimodal"].item() == pytest.approx(l_mul)


def test_eq8_gradient_and_stability():
    loss_fn = UncertaintyWeightedLoss(["multimodal", "sense"])
    with torch.no_grad():
        loss_fn.log_var.copy_(torch.tensor([60.0, -60.0]))  # sigma^2 = e^60 and e^-60
    labels = torch.tensor([0.0])
    total, _ = loss_fn({"multimodal": torch.tensor([1.0]), "sense": torch.tensor([1e-30])}, labels)
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(loss_fn.log_var.grad).all()
    # d/ds [0.5 e^-s L + softplus(s)] at s=0 with L=1: -0.5 + 0.5 = 0
    fn = UncertaintyWeightedLoss(["multimodal", "language"])
    t, _ = fn({"multimodal": torch.tensor([1.0]), "language": torch.tensor([1.0])}, torch.tensor([0.0]))
    t.backward()
    assert torch.allclose(fn.log_var.grad, torch.zeros(2), atol=1e-7)


def test_single_task_is_plain_l1():
    fn = UncertaintyWeightedLoss(["language"])
    total, _ = fn({"language": torch.tensor([1.0, 3.0])}, torch.tensor([0.0, 0.0]))
    assert total.item() == pytest.approx(2.0)


def test_metrics_hand_computed_with_zero_labels():
    y = np.array([2.4, -0.6, 0.0, 1.0, -2.9, 0.0])
    p = np.array([1.6, 0.4, -0.2, 1.4, -3.5, 0.3])
    m = regression_metrics(p, y)
    assert m["mae"] == pytest.approx(np.mean([0.8, 1.0, 0.2, 0.4, 0.6, 0.3]))
    assert m["corr"] == pytest.approx(np.corrcoef(p, y)[0, 1])
    # Acc-7: clip [-3,3] then round. p -> [2, 0, -0, 1, -3, 0]; y -> [2, -1, 0, 1, -3, 0]
    assert m["acc7"] == pytest.approx(5 / 6)
    # Acc-5: clip [-2,2] then round. p -> [2, 0, 0, 1, -2, 0]; y -> [2, -1, 0, 1, -2, 0]
    assert m["acc5"] == pytest.approx(5 / 6)
    # has0: class = value >= 0. y: [T, F, T, T, F, T]; p: [T, T, F, T, F, T] -> 4/6
    assert m["acc2_has0"] == pytest.approx(4 / 6)
    # non0: drop labels == 0 -> y [2.4, -0.6, 1.0, -2.9] > 0: [T, F, T, F]; p [1.6, 0.4, 1.4, -3.5]: [T, T, T, F]
    assert m["acc2_non0"] == pytest.approx(3 / 4)
    # weighted F1, non0: class T: tp=2 fp=1 fn=0 -> F1 = 4/5, support 2; class F: tp=1 fp=0 fn=1 -> 2/3, support 2
    assert m["f1_non0"] == pytest.approx((0.8 * 2 + (2 / 3) * 2) / 4)
    # has0: T: tp=3 (idx 0,3,5) fp=1 (idx 1) fn=1 (idx 2) -> 6/8, support 4; F: tp=1 fp=1 fn=1 -> 2/4, support 2
    assert m["f1_has0"] == pytest.approx((0.75 * 4 + 0.5 * 2) / 6)


def test_weighted_f1_perfect_and_single_class():
    assert weighted_f1(np.array([1, 0, 1]), np.array([1, 0, 1])) == pytest.approx(1.0)
    assert weighted_f1(np.array([1, 1]), np.array([0, 0])) == pytest.approx(0.0)


def test_rounding_is_half_to_even_as_numpy():
    m = regression_metrics(np.array([0.5, 2.5]), np.array([0.0, 2.0]))
    assert m["acc7"] == 1.0  # round(0.5) = 0, round(2.5) = 2


def test_all_zero_labels_make_non0_undefined():
    m = regression_metrics(np.array([0.1, -0.1]), np.array([0.0, 0.0]))
    assert math.isnan(m["acc2_non0"]) and math.isnan(m["f1_non0"])
    assert m["acc2_has0"] == 0.5


def test_seed_summary_mean_and_std():
    s = summarize_seeds([{"mae": 0.7}, {"mae": 0.8}, {"mae": 0.9}])
    assert s["mae"]["mean"] == pytest.approx(0.8)
    assert s["mae"]["std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert s["mae"]["n"] == 3
    table = format_table({"x": s}, metrics=["mae"])
    assert "0.800 ± 0.100" in table


def test_metric_cells_scale_accuracies_to_percent_and_show_seed_spread():
    assert metric_cell("mae", 0.53151) == "0.532"
    assert metric_cell("acc2_non0", 0.898148) == "89.81"
    assert metric_cell("corr", {"mean": 0.9, "std": 0.0041, "n": 3}) == "0.900 ± 0.004"
    assert metric_cell("acc7", float("nan")) == "nan"
    assert metric_cell("mae", {"mean": float("nan"), "std": 0.0}) == "nan"  # a seed summary without a value
    assert metric_cells({"mae": 0.5, "acc7": 0.55}, ["mae", "acc7", "corr"]) == "0.500 | 55.00 | -"


def test_seven_class():
    assert seven_class(2.6) == (3, "highly positive")
    assert seven_class(-0.4) == (0, "neutral")
    assert seven_class(-9) == (-3, "highly negative")


def test_one_runs_summary_shows_no_spread():
    s = summarize_seeds([{"mae": 0.53151}])
    assert s["mae"] == {"mean": pytest.approx(0.53151), "std": 0.0, "n": 1}
    assert metric_cell("mae", s["mae"]) == "0.532"  # no "± 0.000": no spread was measured


def test_constant_predictions_have_no_correlation_even_when_their_float_std_is_not_zero():
    labels = np.arange(7.0)
    assert np.std(np.full(7, 0.1)) > 0  # the float std of equal values: why a std test misses them
    for c in (0.1, 0.3, -1.7, 0.7):
        assert math.isnan(regression_metrics(np.full(7, c), labels)["corr"])
    assert math.isnan(regression_metrics(labels, np.full(7, 0.7))["corr"])


def test_a_non_finite_prediction_makes_every_metric_nan():
    for bad in (float("nan"), float("inf")):
        m = regression_metrics(np.array([bad, 1.0, 1.0]), np.array([1.0, -1.0, 2.0]))
        assert all(math.isnan(v) for v in m.values()), m  # no accuracy from a prediction without a sign


def test_a_label_that_is_not_finite_is_refused_not_counted():
    """An unlabelled clip (NaN) belongs out of the metrics: with it, MAE was NaN but Acc-2 and
    Acc-7 counted it as a miss."""
    with pytest.raises(ValueError, match="1 of 3 labels are not finite"):
        regression_metrics(np.array([0.5, 1.0, 1.0]), np.array([1.0, float("nan"), 2.0]))


def test_a_prediction_of_zero_is_non_negative_for_has0_and_negative_for_non0():
    m = regression_metrics(np.array([0.0, 0.0]), np.array([1.0, -1.0]))
    assert m["acc2_has0"] == 0.5  # 0 >= 0: right for the label 1, wrong for -1
    assert m["acc2_non0"] == 0.5  # 0 > 0 is false: wrong for the label 1, right for -1
