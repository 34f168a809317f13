"""Training throughput: samples per second of SenBERT (full) against the language-only model.

Both train on the same generated batches with the real encoder (the default config's, unless
--encoder), with sequence shapes of MMSA's unaligned MOSI features by default (text 50 tokens,
acoustic 375 x 5, visual 500 x 20). Prints samples/s, seconds per epoch of --epoch-size clips,
the full / language-only cost ratio, and peak memory (RSS).

    python bench/bench_train_throughput.py                      # default encoder (all-mpnet-base-v2)
    python bench/bench_train_throughput.py --encoder all-MiniLM-L6-v2 --steps 4
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.loss import UncertaintyWeightedLoss, tasks_for  # noqa: E402
from model.senbert import SenBERT  # noqa: E402
from pipeline.corpora.clips import Clip
from pipeline.models.dataset import ClipDataset, collate
from pipeline.models.encoders import load_encoder
from pipeline.models.precision import capabilities
from pipeline.training.config import load_config
from pipeline.training.trainer import build_optimizer, train_step

WORDS = "the movie was honestly really good but the ending felt a bit too long and slow for me".split()


def make_clips(n: int, t_text: int, t_a: int, d_a: int, t_v: int, d_v: int, seed: int = 0) -> list[Clip]:
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        la, lv = int(rng.integers(t_a // 2, t_a + 1)), int(rng.integers(t_v // 2, t_v + 1))
        text = " ".join(rng.choice(WORDS, t_text))
        clips.append(Clip(f"c{i}", text, float(rng.uniform(-3, 3)), "train",
                          rng.normal(size=(la, d_a)).astype(np.float32), rng.normal(size=(lv, d_v)).astype(np.float32)))
    return clips


def build(ablation: str | None, args: argparse.Namespace, clips: list[Clip]):
    """Model, loss, optimiser and collated batches for one configuration; returns a step function."""
    over: dict = {"model.encoder": args.encoder} if args.encoder else {}
    for item in args.set or []:
        k, v = item.split("=", 1)
        over[k] = yaml.safe_load(v)
    cfg = load_config(args.config, ablation=ablation, overrides=over)
    m = cfg.model
    m.audio_dim, m.vision_dim = args.d_a, args.d_v
    torch.manual_seed(0)
    enc, tok, hidden = load_encoder(m.encoder, m.encoder_mode)
    model = SenBERT(m, enc, hidden)
    loss_fn = UncertaintyWeightedLoss(tasks_for(m))
    opt, sched = build_optimizer(model, loss_fn, cfg, total_steps=1000)
    ds = ClipDataset(clips, tok, max_text_len=args.text_len, use_audio=m.uses_sense, use_vision=m.uses_sense)
    bs = cfg.batch_size
    batches = [collate(ds.items[i : i + bs], tok.pad_token_id) for i in range(0, len(ds), bs)]
    model.train()

    def step(i: int) -> int:  # the training loop's own step: autocast and clipping as the config says
        batch = batches[i % len(batches)]
        train_step(model, loss_fn, opt, batch, torch.device("cpu"), cfg)
        sched.step()
        return len(batch["ids"])

    return step, sum(p.numel() for p in model.parameters()) / 1e6, bs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="default")
    ap.add_argument("--encoder", help="override the config's encoder")
    ap.add_argument("--steps", type=int, default=6, help="timed optimiser steps per model")
    ap.add_argument("--text-len", type=int, default=50)
    ap.add_argument("--t-a", type=int, default=375)
    ap.add_argument("--d-a", type=int, default=5)
    ap.add_argument("--t-v", type=int, default=500)
    ap.add_argument("--d-v", type=int, default=20)
    ap.add_argument("--epoch-size", type=int, default=1284, help="clips per epoch (MOSI train: 1284)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. model.conv_stride=2")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {capabilities().describe()}", flush=True)
    clips = make_clips(64, args.text_len, args.t_a, args.d_a, args.t_v, args.d_v)
    names = ("language_only", "senbert_full")
    steps = {n: build(a, args, clips) for n, a in zip(names, ("language_only", None))}
    for n in names:
        steps[n][0](0)  # warm-up
    # Alternate the two models step by step, so that any other load on the machine hits both alike.
    seconds = {n: 0.0 for n in names}
    samples = {n: 0 for n in names}
    for i in range(args.steps):
        for n in names:
            t0 = time.perf_counter()
            samples[n] += steps[n][0](i + 1)
            seconds[n] += time.perf_counter() - t0
    res = {}
    for n in names:
        sps = samples[n] / seconds[n]
        res[n] = {"samples_per_s": sps, "seconds_per_epoch": args.epoch_size / sps, "steps": args.steps,
                  "batch": steps[n][2], "params_m": steps[n][1]}
        print(f"{n:14s} {sps:7.2f} samples/s  {args.epoch_size / sps:7.1f} s/epoch "
              f"({args.epoch_size} clips)  {steps[n][1]:.1f} M params", flush=True)
    ratio = res["language_only"]["samples_per_s"] / res["senbert_full"]["samples_per_s"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"full / language-only epoch cost: {ratio:.2f}x (target <= 1.3x)")
    print(f"config {args.config} overrides {args.set or []}")
    print(f"peak RSS: {peak:.0f} MiB; torch threads: {torch.get_num_threads()}; shapes: text {args.text_len}, "
          f"acoustic {args.t_a}x{args.d_a}, visual {args.t_v}x{args.d_v}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": res, "ratio": ratio, "peak_rss_mib": peak,
                                               "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
