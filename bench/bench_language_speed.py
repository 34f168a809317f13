"""What each speed option of the language path buys: seconds per epoch of language-only training.

Trains the language-only model (config ``language``'s encoder, all-mpnet-base-v2 by default) on
the ``train`` texts of a ``label.csv`` in four settings, each adding one option to the previous:

    fp32          fp32, random batches, the default (for-each) Adam: the plain recipe
    +fused        Adam fused into one kernel
    +grouped      batches of similar text length (``group_by_length``)
    +bf16         bfloat16 autocast (``precision: bf16``; what ``precision: auto`` picks where the
                  CPU has native bf16, see pipeline/models/precision.py)

It prints the CPU and its bf16 capability first: bf16 is fast only with native units. For each
setting it times ``--steps`` batches spread evenly over one epoch's batch order (after
two warm-up steps) and scales the mean step time to the epoch. Prints a table and writes JSON.
The model is the config's: with ``model.adapter: lora`` only the adapters and the head train,
and ``--set context=1`` (with the config's ``max_context_len`` and ``context_dropout``) reads the
neighbouring transcripts as a training run does.

    python bench/bench_language_speed.py --data ../shared/data/mosi/label.csv --steps 8
    python bench/bench_language_speed.py --data mosi/label.csv --config language_lora \
        --set context=1 --set context_dropout=0.3      # the shipped default model's recipe
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

from common.config_files import parse_overrides
from model.loss import UncertaintyWeightedLoss, tasks_for  # noqa: E402
from model.senbert import SenBERT  # noqa: E402
from pipeline.corpora.clips import with_context
from pipeline.corpora.load import load_corpus
from pipeline.models.dataset import ClipDataset
from pipeline.models.encoders import load_encoder, load_tokenizer, lora_settings
from pipeline.models.precision import capabilities, resolve_precision
from pipeline.training.config import load_config
from pipeline.training.trainer import make_loader, train_step

SETTINGS = [  # name, fused Adam, length-grouped batches, bf16 autocast
    ("fp32", False, False, False),
    ("+fused", True, False, False),
    ("+grouped", True, True, False),
    ("+bf16", True, True, True),
]


def time_setting(name: str, fused: bool, grouped: bool, bf16: bool, texts_ds: ClipDataset, args) -> dict:
    cfg = _config(args)
    torch.manual_seed(0)
    enc, tok, hidden = load_encoder(cfg.model.encoder, lora=lora_settings(cfg.model))
    model = SenBERT(cfg.model, enc, hidden)
    loss_fn = UncertaintyWeightedLoss(tasks_for(cfg.model))
    params = [p for p in list(model.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr_encoder, fused=fused)
    if cfg.context > 0 and cfg.context_dropout > 0:
        texts_ds.set_context_dropout(cfg.context_dropout, torch.Generator().manual_seed(2))
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
            "steps_per_epoch": len(batches), "padded_tokens_per_step": tokens,
            "trained_parameters": sum(p.numel() for p in params),
            "parameters": sum(p.numel() for p in list(model.parameters()) + list(loss_fn.parameters()))}


def _config(args):
    overrides = parse_overrides(args.set)
    if args.encoder:
        overrides["model.encoder"] = args.encoder
    return load_config(args.config, overrides=overrides)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="label.csv (its train split is used)")
    ap.add_argument("--config", default="language")
    ap.add_argument("--encoder", help="another encoder (name, folder or hub id)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as in senbert train (repeatable), e.g. context=1")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per setting")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--settings", default=",".join(s[0] for s in SETTINGS),
                    help="which settings to time, comma-separated (default: all, in order)")
    args = ap.parse_args()
    corpus = load_corpus(args.data)
    cfg = _config(args)
    tok = load_tokenizer(cfg.model.encoder)
    clips = corpus.split("train")
    if cfg.context > 0:
        clips = with_context(clips, cfg.context)
    ds = ClipDataset(clips, tok, max_text_len=cfg.max_text_len, use_audio=False, use_vision=False,
                     max_context_len=cfg.max_context_len if cfg.context > 0 else 0)
    chosen = args.settings.split(",")
    unknown = sorted(set(chosen) - {s[0] for s in SETTINGS})
    if unknown:
        ap.error(f"--settings: unknown {unknown}; choose from {[s[0] for s in SETTINGS]}")
    rows = [time_setting(*s, ds, args) for s in SETTINGS if s[0] in chosen]
    base = rows[0]["seconds_per_epoch"]
    caps = capabilities("cpu")
    print(f"CPU: {caps.describe()}; precision auto -> {resolve_precision('auto', 'cpu', caps)}")
    print(f"{cfg.model.encoder} (config {args.config}{''.join(' --set ' + s for s in args.set)}; adapter "
          f"{cfg.model.adapter}, context {cfg.context}), {len(ds)} training texts, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads; {rows[0]['trained_parameters'] / 1e6:.2f} M of "
          f"{rows[0]['parameters'] / 1e6:.1f} M parameters trained")
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
