"""How a checkpoint reads transcripts in another style: as given, or ``plain`` (MOSI's style).

CMU-MOSI's transcripts are lower case without punctuation ("they didnt really"); CMU-MOSEI's,
like speech recognition's, are cased and punctuated ("They didn't really."). A model whose last
training stage read MOSI sees the second style at scoring time. This bench scores ``--split`` of
every ``--data`` file twice with one checkpoint (default: the shipped default model), with the
transcripts (and so their neighbours' context) as given and in ``plain`` style
(``pipeline.corpora.clips.styled``), and prints the field's metrics of both, with the model's own
calibration and without it; ``--alone`` also scores each clip read without its neighbours.

    python bench/bench_text_style.py --data mosi/label.csv --data mosei/label.csv --alone --out style.json

Prints the CPU, how many transcripts the style changes, seconds and clips per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpora.clips import read_alone, styled
from pipeline.corpora.load import load_corpus
from pipeline.models.inference import metrics_of
from pipeline.models.metrics import METRIC_NAMES, metric_cells
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, action="append", help="label.csv or .pkl (repeatable)")
    ap.add_argument("--checkpoint", help="a run or packed model (default: the shipped default model)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--alone", action="store_true", help="also score each clip without its neighbours")
    ap.add_argument("--limit", type=int, default=0, help="at most this many clips per file (a smoke run)")
    ap.add_argument("--out", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    print(f"CPU: {capabilities().describe()} ({torch.get_num_threads()} threads); torch {torch.__version__}")
    pr = Predictor.load(args.checkpoint)
    readings = ("context", "alone") if args.alone else ("context",)
    report: dict[str, Any] = {"cpu": capabilities().describe(), "checkpoint": str(pr.path), "split": args.split,
                              "data": {}}
    for data in args.data:
        corpus = load_corpus(data)
        pr.check(corpus)
        clips = [c for c in corpus.split(args.split) if c.label is not None]
        clips = clips[: args.limit] if args.limit else clips
        plain = [replace(c, text=styled(c.text, "plain")) for c in clips]
        changed = sum(a.text != b.text for a, b in zip(clips, plain))
        print(f"{data} {args.split}: {len(clips)} clips, {changed} transcripts changed by the plain style", flush=True)
        rows: dict[str, dict[str, Any]] = {}
        for reading in readings:
            for style, cl in (("as_given", clips), ("plain", plain)):
                cl = read_alone(cl) if reading == "alone" else cl
                t0 = time.perf_counter()
                pred = pr.predict_clips(cl)
                dt = time.perf_counter() - t0
                raw = {**pred, "multimodal": pred.get("multimodal_raw", pred["multimodal"])}
                rows[f"{reading}, {style}"] = {"calibrated": metrics_of(pred), "uncalibrated": metrics_of(raw),
                                               "seconds": dt}
                print(f"  {reading}, {style}: {dt:.1f} s ({len(cl) / dt:.2f} clips/s)", flush=True)
        print(f"\n{data} {args.split} ({len(clips)} clips) | reading, style | " + " | ".join(METRIC_NAMES) + " |")
        for name, r in rows.items():
            for kind in ("calibrated", "uncalibrated"):
                print(f"| {name}, {kind} | {metric_cells(r[kind])} |")
        print(flush=True)
        report["data"][data] = {"n": len(clips), "changed": changed, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
