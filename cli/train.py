"""``senbert train``, ``evaluate``, ``predict`` and ``export-mmsa``: models and corpora.

    senbert train     --data CORPUS --config NAME [--ablation A] [--pretrain CORPUS] [--seeds 1,2,3] --out DIR
    senbert evaluate  [--checkpoint DIR] --data CORPUS [--split test]
    senbert predict   [--checkpoint DIR] --data CORPUS [--split S] [--out preds.csv]
    senbert export-mmsa --data CORPUS --out features.pkl
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from cli.options import CACHE_HELP, add_model_options
from common.io import atomic_open

SPLITS = ("train", "valid", "test")  # pipeline.corpora.clips.SPLITS, without importing torch for --help
PREDICTION_FIELDS = ["id", "split", "label", "score", "polarity", "class7", "class7_name", "score_language",
                     "score_sense", "score_raw", "text", "model", "modalities", "calibration"]


def register(sub: Any) -> None:
    """Add the ``train``, ``evaluate``, ``predict`` and ``export-mmsa`` subcommands."""
    p = sub.add_parser("train", help="train (and select on valid) from a corpus")
    add_data_args(p)
    p.add_argument("--config", default="quick", help="config name under configs/ or a YAML path (default: quick)")
    p.add_argument("--ablation", help="Table II ablation (configs/ablations/): full, language_only, sense_only, "
                                      "no_language_task, no_sense_task, frozen_encoder, random_encoder")
    p.add_argument("--encoder", help="text encoder: packaged name, local directory or Hugging Face id")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (model.d_model=32)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--pretrain", action="append", metavar="CORPUS",
                   help="a preliminary corpus (label.csv or .pkl, repeatable): train on it first "
                        "(pretrain_epochs, selected on its valid split), then on --data from that model")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", help="comma-separated seeds: one run each, summarised as mean and std")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue an unfinished run in --out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="the field's metrics of a checkpoint on a labelled split")
    add_model_options(p)
    add_data_args(p)
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="scores per clip (multimodal, language-only, sense-only)")
    add_model_options(p)
    add_data_args(p)
    p.add_argument("--split", choices=SPLITS, help="only this split (default: all clips)")
    p.add_argument("--out", help="CSV file (default: stdout)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export-mmsa", help="write a corpus with features in MMSA's .pkl layout")
    add_data_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer", default="all-MiniLM-L6-v2",
                   help="tokenizer for text_bert (bert-base-uncased vocabulary; '' to skip)")
    p.set_defaults(func=cmd_export)


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="MMSA .pkl, or a label.csv (MMSA-FET layout)")
    p.add_argument("--raw-dir", help="folder with Raw/<video_id>/<clip_id>.<ext> videos for a label.csv "
                                     "(features are extracted and cached)")
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument("--extract-config", help="extractor config name or YAML (default: default)")


def open_corpus(args: argparse.Namespace) -> Any:
    """The corpus named by ``--data`` (and ``--raw-dir``, ``--cache``, ``--extract-config``)."""
    from pipeline.corpora.load import load_corpus

    return load_corpus(args.data, args.raw_dir, cache_dir=args.cache, extract_config=args.extract_config)


def cmd_train(args: argparse.Namespace) -> int:
    from common.config_files import parse_overrides
    from pipeline.training.config import load_config
    from pipeline.training.trainer import check_run, train, train_seeds

    overrides = parse_overrides(args.set)
    if args.encoder:
        overrides["model.encoder"] = args.encoder
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.pretrain:
        overrides["pretrain"] = [str(Path(p).resolve()) for p in args.pretrain]
    cfg = load_config(args.config, ablation=args.ablation, overrides=overrides)
    if not args.seeds:  # before the corpus is read (and its videos' features extracted)
        check_run(cfg, Path(args.out), args.resume)
    corpus = open_corpus(args)
    print(f"corpus {corpus.source}: {corpus.split_sizes()}  config {cfg.name} ({cfg.model.variant}, "
          f"encoder {cfg.model.encoder}, {cfg.model.encoder_mode})")
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        summary = train_seeds(corpus, cfg, args.out, seeds, progress=not args.quiet, device=args.device)
        print((Path(args.out) / "summary.md").read_text())
        return 0 if summary else 1
    if args.seed is not None:
        cfg.seed = args.seed
    res = train(corpus, cfg, args.out, resume=args.resume, progress=not args.quiet, device=args.device)
    print(f"best epoch {res.best_epoch}; checkpoint {res.checkpoint}")
    print("valid: " + fmt_metrics(res.valid))
    if res.test:
        print("test:  " + fmt_metrics(res.test))
    return 0


def fmt_metrics(m: dict[str, float]) -> str:
    from pipeline.models.metrics import METRIC_NAMES

    return "  ".join(f"{k} {m[k]:.4f}" for k in METRIC_NAMES if k in m)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.models.predictor import Predictor

    pred = Predictor.load(args.checkpoint, device=args.device, precision=args.precision)
    corpus = open_corpus(args)
    m = pred.evaluate(corpus, split=args.split, progress=not args.quiet)
    print(f"{pred.name} ({pred.modalities}) on {args.split} ({m['n']} clips): " + fmt_metrics(m))
    if "uncalibrated" in m:
        print(f"  before its calibration ({pred.calibration.describe()}): " + fmt_metrics(m["uncalibrated"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "metrics": m}, indent=2), encoding="utf-8")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.models.predictor import Predictor

    pred = Predictor.load(args.checkpoint, device=args.device, precision=args.precision)
    corpus = open_corpus(args)
    rows = pred.predict_corpus(corpus, split=args.split, progress=not args.quiet)
    if args.out:
        out = Path(args.out)
        with atomic_open(out, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=PREDICTION_FIELDS)
            w.writeheader()
            w.writerows(rows)
        print(f"{len(rows)} predictions written to {out}")
    else:
        w = csv.DictWriter(sys.stdout, fieldnames=PREDICTION_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.corpora.mmsa import write_mmsa_pkl
    from pipeline.models.encoders import load_tokenizer

    corpus = open_corpus(args)
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else None
    dest = write_mmsa_pkl(corpus, args.out, tokenizer=tok)
    print(f"wrote {dest}: {corpus.split_sizes()}")
    return 0
