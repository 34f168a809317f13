"""Calibration of the final score, measured: each checkpoint and their ensemble, without a
calibration and with each kind, fitted on the train split of ``--fit`` and measured on the valid
split of every ``--data``.

    python bench/bench_calibration.py --fit mosi/label.csv --data mosi/label.csv --data mosei/label.csv \
        --checkpoints pipeline/default_model/member_1 pipeline/default_model/member_2 \
        pipeline/default_model/member_3 [--out calibration.json]

Each checkpoint gets its own map (fitted on its own train scores), the ensemble one fitted on the
mean of the members' train scores, as ``senbert release`` fits a packed model's (both with
``pipeline.models.calibration.fit_quantile``).
Checkpoints score raw here (their own calibration, if any, is not used). Prints the CPU, seconds
per pass and a Markdown table (seeds: mean ± sample std), and the predicted class counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import KINDS, fit_quantile
from pipeline.models.inference import metrics_of
from pipeline.models.metrics import metric_cells, summarize_seeds
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor

KEYS = ("mae", "corr", "acc7", "acc2_non0", "f1_non0")


def _scores(predictor: Predictor, data: str, split: str) -> tuple[np.ndarray, np.ndarray, float]:
    clips = [c for c in load_corpus(data).split(split) if c.label is not None]
    t0 = time.perf_counter()
    pred = predictor.predict_clips(clips, raw=True)
    return np.asarray(pred["multimodal"]), np.asarray(pred["labels"]), time.perf_counter() - t0


def class_counts(scores: np.ndarray) -> list[int]:
    """How many scores fall in each of the 7 classes (-3 ... +3)."""
    return np.bincount((np.clip(np.round(scores), -3, 3) + 3).astype(int), minlength=7).tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", required=True, help="corpus whose train split the maps are fitted on")
    ap.add_argument("--data", required=True, action="append", help="corpora measured on their valid split")
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--out", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    print(f"CPU: {capabilities().describe()} ({torch.get_num_threads()} threads); torch {torch.__version__}",
          flush=True)
    preds = [Predictor.load(ck) for ck in args.checkpoints]
    fit_on = f"{'/'.join(Path(args.fit).resolve().parts[-2:])} train"
    train, valid = [], {d: [] for d in args.data}
    for ck, p in zip(args.checkpoints, preds, strict=True):
        s, y, dt = _scores(p, args.fit, "train")
        train.append((s, y))
        print(f"{ck}: {args.fit} train ({len(s)} clips) {dt:.1f} s", flush=True)
        for d in args.data:
            s, y, dt = _scores(p, d, "valid")
            valid[d].append((s, y))
            print(f"{ck}: {d} valid ({len(s)} clips) {dt:.1f} s", flush=True)
    ens_train = np.mean([s for s, _ in train], axis=0)
    report: dict[str, object] = {"cpu": capabilities().describe(), "fit": args.fit, "checkpoints": args.checkpoints,
                                 "figures": {}}
    lines = ["| calibration | corpus (valid) | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 2) + "|"]
    counts = []
    for kind in KINDS:
        maps = [None] * len(preds) if kind == "none" else [
            fit_quantile(s, y, fitted_on=fit_on, kind=kind) for s, y in train]
        ens_map = None if kind == "none" else fit_quantile(ens_train, train[0][1], fitted_on=fit_on, kind=kind)
        for d in args.data:
            labels = valid[d][0][1]
            per = [metrics_of({"labels": y.tolist(), "multimodal": (m(s) if m else s).tolist()})
                   for (s, y), m in zip(valid[d], maps, strict=True)]
            mean = np.mean([s for s, _ in valid[d]], axis=0)
            shipped = ens_map(mean) if ens_map else mean
            ens = metrics_of({"labels": labels.tolist(), "multimodal": shipped.tolist()})
            seeds = summarize_seeds(per)
            report["figures"][f"{kind} {d}"] = {"members": per, "seeds": seeds, "ensemble": ens}
            name = Path(d).parent.name or d
            if len(per) > 1:
                lines.append(f"| {kind}, {len(per)} checkpoints | {name} | " + metric_cells(seeds, KEYS) + " |")
            lines.append(f"| {kind}, {'ensemble' if len(per) > 1 else 'model'} | {name} | "
                         + metric_cells(ens, KEYS) + " |")
            counts.append(f"{kind:16s} {name:8s} predicted classes -3..+3 {class_counts(shipped)}  "
                          f"labels {class_counts(labels)}")
    print("\n" + "\n".join(lines) + "\n")
    print("\n".join(counts))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
