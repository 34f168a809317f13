"""The final score's calibration (pipeline/models/calibration.py): the quantile map itself, a run that
fits it on its train split, a packed ensemble that carries its own, and malformed ones refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from common.errors import CheckpointMismatchError, InputError
from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import Calibration, calibrated, fit_quantile
from pipeline.models.inference import ensemble_mean
from pipeline.models.packed import CALIBRATION_FILE, pack_model, read_manifest
from pipeline.models.predictor import Ensemble, Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import train
from tests.conftest import SENTENCES, TINY, make_corpus


def _shrunk(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels, and a regression's shrunk predictions of them: rarely beyond +-2.5."""
    rng = np.random.default_rng(seed)
    labels = np.clip(rng.normal(0.2, 1.6, n), -3, 3)
    raw = 0.75 * labels + rng.normal(0, 0.3, n) - 0.1
    assert np.mean(np.abs(raw) >= 2.5) < 0.5 * np.mean(np.abs(labels) >= 2.5)
    return labels, raw


@pytest.mark.parametrize("kind", ["quantile", "quantile_global"])
def test_quantile_map_restores_the_label_distribution_and_keeps_the_order(kind):
    labels, raw = _shrunk()
    cal = fit_quantile(raw, labels, fitted_on="synthetic train, 2000 clips", kind=kind)
    mapped = cal(raw)
    # the mapped scores have the labels' quantiles (up to the knots' spacing and, signs kept, the
    # shares of positive and negative clips) ...
    for q in (0.02, 0.1, 0.9, 0.98):
        assert abs(np.quantile(mapped, q) - np.quantile(labels, q)) < 0.1, q
    assert np.mean(np.abs(mapped) >= 2.5) > 0.8 * np.mean(np.abs(labels) >= 2.5)  # the extreme classes again
    # ... and the same order as the raw ones
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(mapped[order]) >= -1e-12)
    assert cal(np.array([-100.0, 100.0])).tolist() == [cal.y[0], cal.y[-1]]  # flat beyond the ends
    assert np.all(np.diff(cal.x) > 0) and len(cal.x) <= 203
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())), "x.json")
    assert np.array_equal(again(raw), mapped)
    assert cal.describe() == f"{kind} (synthetic train, 2000 clips)"


def test_quantile_keeps_every_sign_and_global_may_not():
    labels, raw = _shrunk()  # the raw scores lean negative (-0.1): more of them below zero than labels
    signed = fit_quantile(raw, labels, kind="quantile")
    mapped = signed(raw)
    assert np.array_equal(np.sign(mapped), np.sign(raw)) and signed(np.array([0.0]))[0] == 0.0
    flipped = np.sign(fit_quantile(raw, labels, kind="quantile_global")(raw)) != np.sign(raw)
    assert flipped.sum() > 10  # the global map moves the zero to the labels' share of negatives
    with pytest.raises(InputError, match="two negative and two positive"):
        fit_quantile(np.abs(raw) + 0.1, labels, fitted_on="x train", kind="quantile")


def test_calibrated_keeps_the_raw_score_and_leaves_other_heads():
    cal = Calibration("quantile", [-1.0, 1.0], [-3.0, 3.0])
    pred = {"ids": ["a", "b"], "labels": [0.0, 1.0], "multimodal": [0.5, -2.0], "language": [0.4, -1.0]}
    out = calibrated(pred, cal)
    assert out["multimodal"] == [1.5, -3.0] and out["multimodal_raw"] == [0.5, -2.0]
    assert out["language"] == [0.4, -1.0] and pred["multimodal"] == [0.5, -2.0]  # input untouched
    assert calibrated(pred, None) is pred


@pytest.mark.parametrize("bad, match", [
    ([1, 2], "must be an object"),
    ({"kind": "isotonic", "x": [0, 1], "y": [0, 1]}, "unknown calibration kind"),
    ({"kind": "none", "x": [0, 1], "y": [0, 1]}, "unknown calibration kind"),
    ({"kind": "quantile", "x": [0, 1, 2], "y": [0, 1]}, "same length"),
    ({"kind": "quantile", "x": [0, 2, 1], "y": [0, 1, 2]}, "non-decreasing"),
    ({"kind": "quantile", "x": [0, 1], "y": [0, float("nan")]}, "finite"),
    ({"kind": "quantile", "x": [1, 1], "y": [0, 1]}, "span an interval"),
])
def test_malformed_calibrations_are_refused_naming_the_file(bad, match):
    with pytest.raises(InputError, match=match) as err:
        Calibration.from_dict(bad, "/m/senbert.json")
    assert "/m/senbert.json" in str(err.value)


def test_fit_needs_two_different_predictions():
    with pytest.raises(InputError, match="at least two"):
        fit_quantile([0.3, 0.3, 0.3], [1.0, -1.0, 0.0], fitted_on="x train")


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    corpus = load_corpus(SENTENCES)  # the sample corpus: positive and negative sentences
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1, "calibration": "quantile"})
    run = tmp_path_factory.mktemp("cal") / "run"
    res = train(corpus, cfg, run, progress=False)
    return corpus, run, res


def test_a_run_fits_its_calibration_on_train_and_reports_both(calibrated_run):
    corpus, run, res = calibrated_run
    result = json.loads((run / "result.json").read_text())
    assert set(result["valid_uncalibrated"]) >= {"mae", "acc7"} and result["valid"] == res.valid
    pred = Predictor.load(res.checkpoint)
    assert pred.calibration is not None and pred.calibration.fitted_on == "sample_corpus/sentences.csv train, 240 clips"
    train_clips = [c for c in corpus.split("train") if c.label is not None]
    raw = pred.predict_clips(train_clips, raw=True)
    assert pred.calibration == fit_quantile(raw["multimodal"], raw["labels"], pred.calibration.fitted_on)
    assert np.array_equal(np.sign(pred.calibration(raw["multimodal"])), np.sign(raw["multimodal"]))
    out = pred.predict_clips(corpus.split("valid"))
    assert np.allclose(out["multimodal"], pred.calibration(out["multimodal_raw"]))
    again = Predictor.load(res.checkpoint).predict_clips(corpus.split("valid"))  # round trip: identical
    assert again["multimodal"] == out["multimodal"]
    rows = pred.predict_corpus(corpus, split="valid")
    assert rows[0]["calibration"].startswith("quantile (") and rows[0]["score_raw"] == pytest.approx(
        float(np.clip(out["multimodal_raw"][0], -3, 3)))
    assert rows[0]["score"] == pytest.approx(float(np.clip(out["multimodal"][0], -3, 3)))
    m = pred.evaluate(corpus, "valid")  # the figures with and without it
    assert m["mae"] == pytest.approx(result["valid"]["mae"]) and m["uncalibrated"] == pytest.approx(
        {k: v for k, v in result["valid_uncalibrated"].items()})


def test_a_run_whose_calibration_cannot_be_fitted_keeps_its_checkpoint_and_says_why(tmp_path, caplog):
    corpus = make_corpus(16, text_only=True)
    for c in corpus.clips:
        c.label = abs(c.label) + 0.5  # no negative label: no negative side to map
    cfg = load_config("quick", ablation="language_only", overrides={**TINY, "epochs": 1, "calibration": "quantile"})
    with caplog.at_level("WARNING", logger="pipeline.training.trainer"):
        res = train(corpus, cfg, tmp_path / "run", progress=False)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "two negative and two positive" in result["calibration_error"] and "valid_uncalibrated" not in result
    assert "no calibration" in caplog.text
    assert Predictor.load(res.checkpoint).calibration is None


def test_a_checkpoint_with_a_broken_calibration_is_refused(calibrated_run, tmp_path):
    _, run, res = calibrated_run
    copy = tmp_path / "ck"
    shutil.copytree(res.checkpoint, copy)
    meta = json.loads((copy / "senbert.json").read_text())
    meta["calibration"]["x"] = list(reversed(meta["calibration"]["x"]))
    (copy / "senbert.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="senbert.json.*non-decreasing"):
        Predictor.load(copy)


def test_a_packed_ensemble_applies_its_own_calibration_to_the_mean(tmp_path):
    corpus = make_corpus(32, text_only=True, seed=5)
    over = {**TINY, "epochs": 1, "model.adapter": "lora", "model.lora_r": 2, "model.variant": "language_only"}
    ckpts = []
    for seed in (1, 2):
        cfg = load_config("quick", overrides={**over, "seed": seed})
        ckpts.append(train(corpus, cfg, tmp_path / f"seed_{seed}", progress=False).checkpoint)
    cal = Calibration("quantile", [-0.5, 0.0, 0.5], [-3.0, 0.1, 3.0], "test")
    out = pack_model(ckpts, tmp_path / "packed", "tiny", calibration=cal)
    assert CALIBRATION_FILE in read_manifest(out)["files"]
    model = Predictor.load(out)
    assert isinstance(model, Ensemble) and model.calibration == cal
    clips = corpus.split("valid")
    mean = ensemble_mean([m.predict_clips(clips, raw=True) for m in model.members])
    got = model.predict_clips(clips)
    assert np.allclose(got["multimodal"], cal(mean["multimodal"])) and got["multimodal_raw"] == mean["multimodal"]
    assert model.predict_clips(clips, raw=True)["multimodal"] == mean["multimodal"]
    # its calibration is hash-checked with the rest of the pack
    f = out / CALIBRATION_FILE
    f.write_text(f.read_text().replace("3.0", "2.0"))
    with pytest.raises(CheckpointMismatchError, match="calibration.json"):
        Predictor.load(out)


def test_bench_calibration_measures_every_kind(calibrated_run, tmp_path, capsys):
    import importlib.util

    data = SENTENCES
    _, _, res = calibrated_run
    spec = importlib.util.spec_from_file_location("bench_calibration", SENTENCES.parents[2] / "bench" /
                                                  "bench_calibration.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "cal.json"
    assert bench.main(["--fit", str(data), "--data", str(data), "--checkpoints", str(res.checkpoint),
                       str(res.checkpoint), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "CPU:" in text and "| quantile_global, ensemble | sample_corpus |" in text
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {f"{k} {data}" for k in ("none", "quantile", "quantile_global")}
    # the checkpoint's own calibration (fitted the same way, on the same train split) is what the bench refits
    own = Predictor.load(res.checkpoint).evaluate(load_corpus(data), "valid")
    assert figures[f"quantile {data}"]["members"][0]["mae"] == pytest.approx(own["mae"])
    assert figures[f"none {data}"]["members"][0]["mae"] == pytest.approx(own["uncalibrated"]["mae"])
