"""Seed ensembles: each member's metrics, their mean ± std, and the ensemble of the first k members.

    python bench/bench_ensemble.py --data mosi/label.csv --split valid \
        --checkpoints runs/x/seed_1 runs/x/seed_2 runs/x/seed_3 [--dtype fp16] [--out ens.json]

A member's predictions are averaged over members (the mean of the multimodal head). ``--dtype
fp16`` first rounds what each member's checkpoint stores to fp16 (for an adapter model its
adapters and heads; the frozen base encoder stays fp32, as it loads from the packaged copy), so
the figures are those of the shipped files (before 2026-12-05 it rounded the base encoder too).
``--alone`` reads every clip without its neighbours (each as the only clip of its video): what a
model trained with ``context`` gives for a clip scored on its own. Prints the CPU, seconds and
clips per second per member.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpora.clips import read_alone
from pipeline.corpora.load import load_corpus
from pipeline.models.checkpoint import trained_state
from pipeline.models.inference import ensemble_mean, metrics_of
from pipeline.models.metrics import METRIC_NAMES, metric_cells, summarize_seeds
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor


def cpu_name() -> str:
    return capabilities().describe()


def round_to(predictor: Predictor, dtype: str) -> int:
    """Round what a checkpoint stores (:func:`~pipeline.models.checkpoint.trained_state`: for an adapter
    model its adapters and heads, not the frozen base encoder, which loads from the packaged copy
    in fp32) to ``dtype``, as packing does. Returns the number of tensors rounded."""
    if dtype == "fp32":
        return 0
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    stored = set(trained_state(predictor.model))
    n = 0
    with torch.no_grad():
        for name, p in predictor.model.named_parameters():
            if name in stored and p.dtype == torch.float32:
                p.copy_(p.to(dt).to(torch.float32))
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, action="append", help="label.csv or .pkl (repeatable)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    ap.add_argument("--alone", action="store_true", help="no utterance context: each clip its own video")
    ap.add_argument("--out", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"CPU: {cpu_name()} ({torch.get_num_threads()} threads); torch {torch.__version__}; dtype {args.dtype}")
    report: dict[str, object] = {"cpu": cpu_name(), "dtype": args.dtype, "split": args.split, "alone": args.alone,
                                 "data": {}}
    for data in args.data:
        corpus = load_corpus(data)
        clips = [c for c in corpus.split(args.split) if c.label is not None]
        if args.alone:  # a video of its own: no neighbours to read
            clips = read_alone(clips)
        preds, members = [], []
        for ck in args.checkpoints:
            pr = Predictor.load(ck)
            round_to(pr, args.dtype)
            pr.check(corpus)
            t0 = time.perf_counter()
            p = pr.predict_clips(clips)
            dt = time.perf_counter() - t0
            m = metrics_of(p)
            preds.append(p)
            members.append(m)
            print(f"{data} {args.split} ({len(clips)} clips) member {ck}: {metric_cells(m)}  "
                  f"[{dt:.1f} s, {len(clips) / dt:.1f} clips/s]", flush=True)
        spread = summarize_seeds(members)
        mean = {k: spread[k]["mean"] for k in METRIC_NAMES}
        std = {k: spread[k]["std"] for k in METRIC_NAMES}
        print(f"\n{data} {args.split}: | members | " + " | ".join(METRIC_NAMES) + " |")
        print(f"| mean ± std of members | {metric_cells(spread)} |")
        ens = {}
        for k in range(2, len(preds) + 1):
            e = metrics_of(ensemble_mean(preds[:k]))
            ens[k] = e
            print(f"| ensemble of first {k} | {metric_cells(e)} |")
        report["data"][data] = {"n": len(clips), "members": members, "mean": mean, "std": std,
                                "ensembles": {str(k): v for k, v in ens.items()},
                                "checkpoints": args.checkpoints}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
