"""What scoring in bf16 (or, as an experiment, int8) costs and gains against fp32: the same model
loaded in each precision, run on one labelled split, read with neighbours (as the model card
reads it) and with every clip alone. ``int8`` is not a precision the project offers: here the
text encoder's linear layers (not the LoRA adapters) are quantized dynamically, weights per
output channel (``torch.ao``), to measure what that would cost.

    python bench/bench_precision.py --data mosi/label.csv --split valid          # the default model
    python bench/bench_precision.py --data mosi/label.csv --precisions fp32,int8 --checkpoint runs/my

Prints the CPU, then per precision and reading: MAE, Pearson correlation, Acc-2 (zeros
excluded), Acc-7, their change from fp32, the largest and mean change of a clip's score, and
clips per second (model loading not counted; one warm-up batch first). bf16 on a CPU without
native bf16 is emulated and slow: leave it out of ``--precisions`` there. Nothing is
asserted: the figures are for docs/scoring.md and the notes.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.corpora.clips import Corpus  # noqa: E402
from pipeline.corpora.load import load_corpus  # noqa: E402
from pipeline.models.metrics import regression_metrics  # noqa: E402
from pipeline.models.precision import capabilities  # noqa: E402
from pipeline.models.predictor import Predictor  # noqa: E402


def alone(corpus: Corpus) -> Corpus:
    """``corpus`` with every clip a video of its own (no neighbours to read)."""
    clips = [replace(c, meta={**c.meta, "video_id": f"{c.meta.get('video_id', '')}#{c.clip_id}"})
             for c in corpus.clips]
    return replace(corpus, clips=clips)


def quantize_linears(module: torch.nn.Module, done: dict[int, torch.nn.Module]) -> None:
    """Every ``nn.Linear`` under ``module`` but the LoRA adapters' replaced by a dynamically
    quantized int8 one; ``done`` (weight storage -> quantized layer) quantizes a base encoder
    that members share once."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():  # torch's eager quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        for name, lin in [(n, m) for n, m in module.named_modules()
                          if type(m) is torch.nn.Linear and ".lora_" not in f".{n}"]:
            if lin.weight.data_ptr() not in done:
                lin.qconfig = per_channel_dynamic_qconfig
                done[lin.weight.data_ptr()] = DynamicLinear.from_float(lin)
            parent, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, child, done[lin.weight.data_ptr()])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="label.csv or MMSA .pkl")
    ap.add_argument("--split", default="valid", choices=("train", "valid"))
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32 (always, the reference), bf16, int8")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    caps = capabilities("cpu")
    print(f"CPU: {caps.describe()}")
    wanted = ["fp32"] + [p for p in args.precisions.split(",") if p and p != "fp32"]  # fp32: the reference
    corpus = load_corpus(args.data)
    readings = {"with neighbours": corpus, "alone": alone(corpus)}
    out: dict[str, dict] = {}
    base: dict[str, np.ndarray] = {}
    print("| precision | reading | MAE | Corr | Acc-2 non0 | Acc-7 | dMAE | dCorr | max d score | mean d score "
          "| clips/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for prec in wanted:
        model = Predictor.load(args.checkpoint, precision="fp32" if prec == "int8" else prec)
        if prec == "int8":
            quantized: dict[int, torch.nn.Module] = {}
            for member in getattr(model, "members", [model]):
                quantize_linears(member.model.language.encoder, quantized)
        model.predict_clips(corpus.split(args.split)[:32])  # warm-up
        for reading, corp in readings.items():
            clips = corp.split(args.split)
            t0 = time.perf_counter()
            pred = model.predict_clips(clips)
            secs = time.perf_counter() - t0
            scores = np.clip(np.asarray(pred["multimodal"], dtype=np.float64), -3, 3)
            labels = np.asarray(pred["labels"], dtype=np.float64)
            ok = np.isfinite(labels)
            m = regression_metrics(scores[ok], labels[ok])
            ref = base.setdefault(reading, scores)
            ref_m = out.get("fp32", {}).get(reading, {}).get("metrics", m)
            diff = np.abs(scores - ref)
            out.setdefault(prec, {})[reading] = {"metrics": m, "max_diff": float(diff.max()),
                                                 "mean_diff": float(diff.mean()), "clips_per_s": len(clips) / secs}
            print(f"| {prec} | {reading} | {m['mae']:.4f} | {m['corr']:.4f} | {100 * m['acc2_non0']:.2f} | "
                  f"{100 * m['acc7']:.2f} | {m['mae'] - ref_m['mae']:+.4f} | {m['corr'] - ref_m['corr']:+.4f} | "
                  f"{diff.max():.4f} | {diff.mean():.4f} | {len(clips) / secs:.1f} |", flush=True)
        del model
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": caps.describe(), "figures": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
