"""A context model's two readings of a clip, and their mean: does averaging them help?

A model trained with ``context`` and ``context_dropout`` (the shipped default) can read a clip
with its neighbouring transcripts or alone. This bench scores every clip both ways with one
checkpoint (a packed ensemble or a single run; raw scores, before any calibration), fits the
issue's calibration (``quantile``, on the first ``--data`` file's ``--fit-split``) separately
for each reading, and prints the field's metrics on ``--split`` of every ``--data`` file for:

- ``context``: the clip with its neighbours (what ``senbert evaluate`` does on a corpus);
- ``alone``: the clip read on its own (what ``senbert score`` does on a folder of short clips);
- ``mean``: the mean of the two raw scores (test-time averaging over the two readings).

    python bench/bench_context_views.py --data mosi/label.csv --data mosei/label.csv --out views.json

Prints the CPU, the seconds and clips per second of each scoring pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import InputError  # noqa: E402
from pipeline.corpora.clips import read_alone
from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import calibrated, fit_quantile
from pipeline.models.inference import metrics_of
from pipeline.models.metrics import METRIC_NAMES, metric_cells
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor

VIEWS = ("context", "alone", "mean")


def views_of(predictor: Any, clips: list, label: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for view, cl in (("context", clips), ("alone", read_alone(clips))):
        t0 = time.perf_counter()
        out[view] = predictor.predict_clips(cl, raw=True)
        dt = time.perf_counter() - t0
        print(f"{label} {view}: {len(cl)} clips in {dt:.1f} s ({len(cl) / dt:.2f} clips/s)", flush=True)
    out["mean"] = {**out["context"],
                   "multimodal": ((np.asarray(out["context"]["multimodal"])
                                   + np.asarray(out["alone"]["multimodal"])) / 2).tolist()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, action="append", help="label.csv or .pkl (repeatable); "
                    "the first one's --fit-split fits the calibrations")
    ap.add_argument("--checkpoint", help="a run or packed model (default: the shipped default model)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--fit-split", default="train")
    ap.add_argument("--limit", type=int, default=0, help="at most this many clips per split (a smoke run)")
    ap.add_argument("--out", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    print(f"CPU: {capabilities().describe()} ({torch.get_num_threads()} threads); torch {torch.__version__}")
    pr = Predictor.load(args.checkpoint)

    def labelled(corpus: Any, split: str) -> list:
        clips = [c for c in corpus.split(split) if c.label is not None]
        return clips[: args.limit] if args.limit else clips

    corpora = [load_corpus(d) for d in args.data]
    for c in corpora:
        pr.check(c)
    fit = views_of(pr, labelled(corpora[0], args.fit_split), f"{args.data[0]} {args.fit_split}")
    cals: dict[str, Any] = {}
    for v in VIEWS:
        try:
            cals[v] = fit_quantile(fit[v]["multimodal"], fit[v]["labels"], fitted_on=f"{args.data[0]} {args.fit_split}")
        except InputError as exc:  # e.g. a model whose scores there all have one sign: its rows stay uncalibrated
            print(f"{v}: no calibration ({exc})", flush=True)
    report: dict[str, Any] = {"cpu": capabilities().describe(), "checkpoint": str(pr.path), "split": args.split,
                              "fit_split": args.fit_split, "data": {}}
    for data, corpus in zip(args.data, corpora):
        clips = labelled(corpus, args.split)
        pred = views_of(pr, clips, f"{data} {args.split}")
        rows = {}
        for v in VIEWS:
            rows[v] = {"uncalibrated": metrics_of(pred[v])}
            if v in cals:
                rows[v]["calibrated"] = metrics_of(calibrated(pred[v], cals[v]))
        print(f"\n{data} {args.split} ({len(clips)} clips) | reading | " + " | ".join(METRIC_NAMES) + " |")
        for v in VIEWS:
            for kind, m in rows[v].items():
                print(f"| {v}, {kind} | {metric_cells(m)} |")
        report["data"][data] = {"n": len(clips), "views": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
