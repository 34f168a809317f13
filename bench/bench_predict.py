"""Inference speed of a checkpoint on a label.csv: clips per second with batches in file order
(padded to their longest member) against length-sorted batches (what ``Predictor`` does; the
results come back in the input order), and whether both give the same predictions.

    python bench/bench_predict.py --checkpoint runs/lang/seed_1 --data ../shared/data/mosei/label.csv \\
        --split valid --limit 1000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.corpora.load import load_corpus
from pipeline.models.inference import make_dataset, make_loader, predict_dataset, run_inference
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="label.csv (or any corpus the checkpoint can read)")
    ap.add_argument("--split", help="only this split (default: every clip)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many clips (0 = all)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    print(f"CPU: {capabilities('cpu').describe()}, {torch.get_num_threads()} threads")
    pred = Predictor.load(args.checkpoint)
    corpus = load_corpus(args.data)
    clips = corpus.split(args.split) if args.split else corpus.clips
    if args.limit:
        clips = clips[:args.limit]
    ds = make_dataset(list(clips), pred.tokenizer, pred.meta.model_config.uses_sense, pred.meta)
    rows = []
    with torch.inference_mode():
        warm = make_dataset(list(clips[:args.batch_size]), pred.tokenizer, pred.meta.model_config.uses_sense, pred.meta)
        run_inference(pred.model, make_loader(warm, args.batch_size, pred.tokenizer))  # untimed: first-call costs
        t0 = time.perf_counter()
        plain = run_inference(pred.model, make_loader(ds, args.batch_size, pred.tokenizer))
        rows.append(("file order", time.perf_counter() - t0))
        t0 = time.perf_counter()
        grouped = predict_dataset(pred.model, ds, args.batch_size, pred.tokenizer)
        rows.append(("length-sorted", time.perf_counter() - t0))
    diff = float(np.max(np.abs(np.asarray(plain["multimodal"]) - np.asarray(grouped["multimodal"]))))
    assert plain["ids"] == grouped["ids"], "length-sorted predictions came back in another order"
    print(f"{len(ds)} clips, batch {args.batch_size}, checkpoint {args.checkpoint}")
    print("| batches | seconds | clips/s |")
    print("|---|---|---|")
    for name, secs in rows:
        print(f"| {name} | {secs:.1f} | {len(ds) / secs:.1f} |")
    print(f"largest difference between the two: {diff:.2e}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
