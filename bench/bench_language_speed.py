"""What each speed option of the language path buys: seconds per epoch of language-only training.

Trains the language-only model (config ``language``'s encoder, all-mpnet-base-v2 by default) on
the ``train`` texts of a ``label.csv`` in four settings, each adding one option to the previous:

    fp32          fp32, random batches, the default (for-each) Adam: the plain recipe
    +fused        Adam fused into one kernel
    +grouped      batches of similar text length (``group_by_length``)
    +bf16         bfloat16 autocast (``precision: bf16``; what ``precision: auto`` picks where the
                  CPU has native bf16, see pipeline/precision.py)

It prints the CPU and its bf16 capability first: bf16 is fast only with native units. For each
setting it times ``--steps`` batches spread evenly over one epoch's batch order (after
one warm-up step) and scales the mean step time to the epoch. Prints a table and writes JSON.

    python bench/bench_language_speed.py --data ../shared/data/mosi/label.csv --steps 8
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.loss import UncertaintyWeightedLoss, tasks_for  # noqa: E402
from model.senbert import SenBERT  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.corpora import load_corpus  # noqa: E402
from pipeline.data import ClipDataset  # noqa: E402
from pipeline.encoders import load_encoder, load_tokenizer  # noqa: E402
from pipeline.precision import capabilities, resolve_precision  # noqa: E402
from pipeline.train import make_loader, train_step  # noqa: E402

SETTINGS = [  # name, fused Adam, length-grouped batches, bf16 autocast
    ("fp32", False, False, False),
    ("+fused", True, False, False),
    ("+grouped", True, True, False),
    ("+bf16", True, True, True),
]


def time_setting(name: str, fused: bool, grouped: bool, bf16: bool, texts_ds: ClipDataset, args) -> dict:
    cfg = load_config(args.config, overrides={"model.encoder": args.encoder} if args.encoder else {})
    torch.manual_seed(0)
    enc, tok, hidden = load_encoder(cfg.model.encoder)
    model = SenBERT(cfg.model, enc, hidden)
    loss_fn = UncertaintyWeightedLoss(tasks_for(cfg.model))
    opt = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=cfg.lr_encoder, fused=fused)
    loader = make_loader(texts_ds, cfg.batch_size, tok, shuffle=True, generator=torch.Generator().manual_seed(1),
                         group_by_length=grouped)
    batches = list(loader)
    picks = [batches[round(i * (len(batches) - 1) / max(1, args.steps - 1))] for i in range(args.steps)]
    model.train()
    cfg.precision = "bf16" if bf16 else "fp32"
    cpu = torch.device("cpu")
    for b in picks[:2]:  # warm-up (allocations, kernel selection)
        train_step(model, loss_fn, opt, b, cpu, cfg)
    t0 = time.perf_counter()
    for b in picks:
        train_step(model, loss_fn, opt, b, cpu, cfg)
    per_step = (time.perf_counter() - t0) / len(picks)
    tokens = sum(int(b["attention_mask"].numel()) for b in picks) / len(picks)
    return {"setting": name, "seconds_per_step": per_step, "seconds_per_epoch": per_step * len(batches),
            "steps_per_epoch": len(batches), "padded_tokens_per_step": tokens}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="label.csv (its train split is used)")
    ap.add_argument("--config", default="language")
    ap.add_argument("--encoder", help="another encoder (name, folder or hub id)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per setting")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    corpus = load_corpus(args.data)
    cfg = load_config(args.config, overrides={"model.encoder": args.encoder} if args.encoder else {})
    tok = load_tokenizer(cfg.model.encoder)
    ds = ClipDataset(corpus.split("train"), tok, max_text_len=cfg.max_text_len, use_audio=False, use_vision=False)
    rows = [time_setting(*s, ds, args) for s in SETTINGS]
    base = rows[0]["seconds_per_epoch"]
    caps = capabilities("cpu")
    print(f"CPU: {caps.describe()}; precision auto -> {resolve_precision('auto', 'cpu', caps)}")
    print(f"{cfg.model.encoder}, {len(ds)} training texts, batch {cfg.batch_size}, {torch.get_num_threads()} threads")
    print("| setting | padded tokens/step | s/step | s/epoch | speed-up |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["speedup"] = base / r["seconds_per_epoch"]
        print(f"| {r['setting']} | {r['padded_tokens_per_step']:.0f} | {r['seconds_per_step']:.2f} | "
              f"{r['seconds_per_epoch']:.0f} | {r['speedup']:.2f}x |")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
